"""Turn a job's records into per-cell scores, using only trusted inputs (source notebook + reference).

    >>> cells = graded_cells(Path("solutions/01_x/01_x.ipynb"))   # course_utils.grading.cells  # doctest: +SKIP
    >>> score_notebook(cells, job_output, reference_records)      # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from course_utils.grading.cells import GradedCell
from course_utils.grading.verdicts import compare_records


@dataclass
class CellScore:
    grade_id: str
    score: float | None       # None: left to a human grader
    max_score: float
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def score_notebook(cells: list[GradedCell], records: dict, reference: dict, *,
                   problem: str | None = None, limits_hit: list[str] | None = None) -> list[CellScore]:
    """Points for each cell: full points iff the trusted comparison passed, else 0 with the reason."""
    verdicts = compare_records(records, reference) if records or not problem else {}
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
