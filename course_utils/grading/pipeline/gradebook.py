"""Write the autograder's scores and comments into nbgrader's gradebook (manual scores are kept).

>>> write_scores(course, results)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.utils import parse_utc
from sqlalchemy.exc import SAWarning

from course_utils.grading.course import Course


def _apply(gb: Gradebook, result: dict, timestamp=None) -> None:
    student, assignment = result["student"], result["assignment"]
    gb.update_or_create_student(student)
    gb.update_or_create_submission(assignment, student, **({"timestamp": timestamp} if timestamp else {}))
    for notebook, entry in result["notebooks"].items():
        comments: dict[str, list[str]] = {}
        for cell in entry["cells"]:
            try:
                grade = gb.find_grade(cell["grade_id"], notebook, assignment, student)
            except MissingEntry:
                continue  # the cell is not in the gradebook's copy of the source (stale release)
            if cell["score"] is None:
                grade.needs_manual_grade = True
                continue
            grade.auto_score = cell["score"]
            grade.needs_manual_grade = grade.manual_score is not None
            if cell.get("answer_id"):
                mark = "passed" if cell["score"] == cell["max_score"] else "failed"
                comments.setdefault(cell["answer_id"], []).append(f"[{cell['grade_id']}: {mark}] {cell['message']}")
        for answer_id, lines in comments.items():
            try:
                gb.find_comment(answer_id, notebook, assignment, student).auto_comment = "\n".join(lines)
            except MissingEntry:
                pass


def _submitted_timestamp(course: Course, assignment: str, student: str):
    """The submission's ``timestamp.txt`` (the exchange writes one), parsed as nbgrader does: the formgrader
    shows a submission as graded only when the gradebook holds the same timestamp."""
    path = course.submitted_dir / student / assignment / "timestamp.txt"
    try:
        return parse_utc(path.read_text().strip()) if path.is_file() and not path.is_symlink() else None
    except (OSError, ValueError, OverflowError):
        return None


def write_scores(course: Course, results: list[dict]) -> None:
    """Apply every result to the gradebook in place.

    The result files are the record of what was decided and every run applies all of them again, so the
    gradebook can always be rebuilt from them; writing in place (SQLite's own transactions) keeps what a
    human grader saves in the formgrader meanwhile, which swapping in a copy would lose.
    """
    course.db_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission autoflush noise
        for result in results:
            _apply(gb, result, _submitted_timestamp(course, result["assignment"], result["student"]))
        gb.db.commit()
