"""Turn a job's records into per-cell scores, using only trusted inputs (source notebook + reference).

    >>> cells = graded_cells(Path("solutions/01_x/01_x.ipynb"))   # course_utils.grading.cells  # doctest: +SKIP
    >>> score_notebook(cells, job_output, reference_records, notebook=executed_json, tasks=task_runs)  # doctest: +SKIP

A constrained task (``pipeline.tasks``) is scored from its own job, which ran its answer cell alone: that job's
records against its reference, with the trusted static check of the same answer cell standing in for the
kernel's record of the constraint (``pipeline.constraints``). Every other task is scored from the whole
notebook's records. Where a test cell stopped early, the message says why, as the learner's notebook said it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from course_utils.grading.cells import GradedCell
from course_utils.grading.pipeline.constraints import answer_problems
from course_utils.grading.pipeline.verdicts import Verdict, compare_records, stopped_cells


@dataclass
class CellScore:
    grade_id: str
    score: float | None  # None: left to a human grader
    max_score: float
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TaskRun:
    """A constrained task's own job: its answer cell (as submitted) run alone with its test cell."""

    answer: str | None  # the answer cell's source (None: the submission has no such cell)
    records: dict  # what that job's kernel recorded
    reference: dict  # the solution's records for the same job
    notebook: str | None = None  # the job's executed notebook (JSON), for why a test cell stopped
    problem: str | None = None
    limits_hit: list[str] = field(default_factory=list)


def task_verdict(task: str, run: TaskRun) -> Verdict:
    """A constrained task's verdict from its own job: the answer cell's static problems (trusted) override the
    kernel's constraint records, then every record is compared with the reference."""
    records = dict(run.records)
    for key, said in answer_problems(run.answer, run.reference).items():
        records[key] = {"kind": "constraint", "value": [said], "params": {}}
    verdict = compare_records(records, run.reference, stopped_cells(run.notebook)).get(task)
    if verdict is None:
        return Verdict(task, False, "this test cell records nothing the grader can check: ask the instructor")
    notes = [f"(the run was stopped early: {'; '.join(run.limits_hit)})"] if run.limits_hit else []
    notes += [f"({run.problem})"] if run.problem else []
    if verdict.passed or not notes:
        return verdict
    return Verdict(task, False, "\n".join([verdict.message, *notes]))


def score_notebook(
    cells: list[GradedCell],
    records: dict,
    reference: dict,
    *,
    problem: str | None = None,
    limits_hit: list[str] | None = None,
    notebook=None,
    tasks: dict[str, TaskRun] | None = None,
) -> list[CellScore]:
    """Points for each cell: full points iff the trusted comparison passed, else 0.

    ``notebook`` is the notebook the kernel executed (JSON text or NotebookNode), read only to say why a test
    cell stopped; ``tasks`` maps each constrained task to its own job (:class:`TaskRun`).
    """
    tasks = tasks or {}
    whole = {k: v for k, v in reference.items() if k.split("/")[0] not in tasks}
    verdicts = compare_records(records, whole, stopped_cells(notebook)) if records or not problem else {}
    verdicts.update({task: task_verdict(task, run) for task, run in tasks.items()})
    stopped = "; ".join(limits_hit or [])
    scores = []
    for cell in cells:
        if not cell.autograded:
            scores.append(CellScore(cell.grade_id, None, cell.points, "graded by hand"))
            continue
        verdict = verdicts.get(cell.grade_id)
        if cell.grade_id in tasks:
            scores.append(
                CellScore(cell.grade_id, cell.points if verdict.passed else 0.0, cell.points, verdict.message)
            )
        elif problem and not records:
            scores.append(CellScore(cell.grade_id, 0.0, cell.points, problem))
        elif verdict is None:
            scores.append(
                CellScore(
                    cell.grade_id,
                    0.0,
                    cell.points,
                    "this test cell records nothing the grader can check: ask the instructor",
                )
            )
        else:
            message = verdict.message
            if not verdict.passed and stopped:
                message += f"\n(the run was stopped early: {stopped})"
            if not verdict.passed and problem:
                message += f"\n({problem})"
            scores.append(CellScore(cell.grade_id, cell.points if verdict.passed else 0.0, cell.points, message))
    return scores
