"""``export``: the gradebook as a CSV (one row per student and task) and a histogram PNG per task.

Scores come from nbgrader's gradebook (so a human grader's manual scores count); comments from the
grader's result files.

    >>> csv_path, pngs = export(Course.load("."))  # grading/export/grades.csv + histograms  # doctest: +SKIP
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure
from nbgrader.api import Gradebook

from course_utils.atomic import replacing
from course_utils.grading.course import Course
from course_utils.grading.pipeline.results import load_result

COLUMNS = ["student", "assignment", "task", "score", "max_score", "comments"]


def gradebook_rows(course: Course) -> list[dict]:
    """One dict per (student, assignment, task) with the gradebook's score and the grader's comment."""
    rows = []
    if not course.db_path.exists():
        return rows
    with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        for assignment in gb.assignments:
            for submission in gb.assignment_submissions(assignment.name):
                student = submission.student.id
                result = load_result(course, assignment.name, student) or {"notebooks": {}}
                for notebook in submission.notebooks:
                    comments = {
                        c["grade_id"]: c["message"] for c in result["notebooks"].get(notebook.name, {}).get("cells", [])
                    }
                    for grade in sorted(notebook.grades, key=lambda g: g.name):
                        rows.append(
                            {
                                "student": student,
                                "assignment": assignment.name,
                                "task": grade.name,
                                "score": grade.score,
                                "max_score": grade.max_score,
                                "comments": comments.get(grade.name, ""),
                            }
                        )
    return sorted(rows, key=lambda r: (r["assignment"], r["student"], r["task"]))


def histogram(scores: list[float], max_score: float, title: str, path: Path) -> Path:
    """A histogram of one task's scores, saved as a PNG (no pyplot state involved)."""
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.hist(scores, bins=min(10, max(1, len(set(scores)))), range=(0, max_score or 1), color="tab:blue")
    ax.set(title=title, xlabel=f"score (max {max_score:g})", ylabel="students")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


def export(course: Course, out_dir: Path | None = None) -> tuple[Path, list[Path]]:
    """Write ``grades.csv`` and ``histograms/<assignment>__<task>.png`` under ``out_dir`` (default: the
    course's export folder); return the CSV's path and the PNGs'."""
    out_dir = Path(out_dir) if out_dir is not None else course.export_dir
    rows = gradebook_rows(course)
    csv_path = out_dir / "grades.csv"
    with replacing(csv_path, suffix=".csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    per_task = defaultdict(list)
    for row in rows:
        per_task[(row["assignment"], row["task"], row["max_score"])].append(row["score"] or 0.0)
    hist_dir = out_dir / "histograms"
    hist_dir.mkdir(exist_ok=True)
    pngs = [
        histogram(scores, top, f"{assignment}: {task}", hist_dir / f"{assignment}__{task}.png")
        for (assignment, task, top), scores in sorted(per_task.items())
    ]
    return csv_path, pngs
