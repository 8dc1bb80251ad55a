"""Turn a job's records into per-cell scores, using only trusted inputs (source notebook + reference).

    >>> cells = graded_cells(Path("solutions/01_x/01_x.ipynb"))   # course_utils.grading.cells  # doctest: +SKIP
    >>> score_notebook(cells, job_output, reference_records, notebook=executed_json)  # doctest: +SKIP

A constrained task (a reference record of kind ``constraint``) passes only if, besides its records, the
executed notebook's cells pass the static constraint check (``course_utils.grading.pipeline.constraints``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from course_utils.grading.cells import GradedCell
from course_utils.grading.pipeline.constraints import constraint_problems
from course_utils.grading.pipeline.verdicts import Verdict, compare_records


@dataclass
class CellScore:
    grade_id: str
    score: float | None       # None: left to a human grader
    max_score: float
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def score_notebook(cells: list[GradedCell], records: dict, reference: dict, *,
                   problem: str | None = None, limits_hit: list[str] | None = None,
                   notebook=None, shipped=()) -> list[CellScore]:
    """Points for each cell: full points iff the trusted comparison (and any constraint check) passed, else 0.

    ``notebook`` is the notebook the kernel executed (JSON text or NotebookNode), which the constraint check
    reads; ``shipped`` names the Python modules the submission ships beside it.
    """
    verdicts = compare_records(records, reference) if records or not problem else {}
    for grade_id, broken in constraint_problems(notebook, reference, shipped).items():
        verdict = verdicts.get(grade_id)
        if verdict is not None:
            text = f"constraint check failed: {broken}"
            verdicts[grade_id] = Verdict(grade_id, False, text if verdict.passed else f"{verdict.message}\n- {text}")
    stopped = "; ".join(limits_hit or [])
    scores = []
    for cell in cells:
        if not cell.autograded:
            scores.append(CellScore(cell.grade_id, None, cell.points, "graded by hand"))
            continue
        verdict = verdicts.get(cell.grade_id)
        if problem and not records:
            scores.append(CellScore(cell.grade_id, 0.0, cell.points, problem))
        elif verdict is None:
            scores.append(CellScore(cell.grade_id, 0.0, cell.points,
                                    "this test cell records nothing the grader can check: ask the instructor"))
        else:
            message = verdict.message
            if not verdict.passed and stopped:
                message += f"\n(the run was stopped early: {stopped})"
            if not verdict.passed and problem:
                message += f"\n({problem})"
            scores.append(CellScore(cell.grade_id, cell.points if verdict.passed else 0.0, cell.points, message))
    return scores
