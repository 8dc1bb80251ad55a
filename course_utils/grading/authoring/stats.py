"""``stats``: what each exercise holds (tasks, points, visible and hidden tests, constraint checks, how much
of it a lesson gives away) and what grading it costs.

    >>> print(stats(Course.load("."), ["01_tensors_vs_numpy"], grade=False))  # doctest: +SKIP
    | exercise | tasks | points | visible checks | hidden records | constraint checks | points passable by copying | ...

*Constraint checks* counts the ``constrained(...)`` calls of the test cells (each a stated constraint, checked
in the kernel and again by the grader, ``grading.constraints``). *Points passable by copying* are the points
of the tasks whose whole solution appears, normalised, in a lesson or in the task's prompt
(``grading.copying``).

With ``grade=True`` the solution and the untouched release of every exercise are submitted as two students
of a throw-away copy of the course and graded by the course's own pipeline (sandboxed where bubblewrap
works), so the table also shows what each earns and how long each notebook took to run.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import nbformat

from course_utils.grading.cells import nbgrader_meta, read_notebook
from course_utils.grading.course import Course

VISIBLE_CHECK = re.compile(r"\bcheck_\w+\(|raise CheckFailure\(")
HIDDEN_RECORD = re.compile(r"\brecord\(")
CONSTRAINT_CHECK = re.compile(r"\bconstrained\(")


def static_counts(course: Course, assignment: str) -> dict:
    """Tasks, points, visible checks and hidden records over the assignment's source notebooks."""
    counts = {"tasks": 0, "points": 0.0, "visible": 0, "hidden": 0, "constraints": 0}
    for notebook in course.notebooks(assignment):
        for cell in read_notebook(course.source_notebook(assignment, notebook)).cells:
            meta = nbgrader_meta(cell)
            if not meta.get("grade"):
                continue
            visible, hidden = course.markers.split(cell.source)
            counts["tasks"] += 1
            counts["points"] += float(meta.get("points", 0))
            counts["visible"] += len(VISIBLE_CHECK.findall(visible))
            counts["hidden"] += len(HIDDEN_RECORD.findall(hidden))
            counts["constraints"] += len(CONSTRAINT_CHECK.findall(visible))
    return counts


def copyable_points(course: Course, assignments: list[str]) -> dict[str, float]:
    """assignment -> points of its tasks passable by copying a lesson or the prompt (``grading.copying``)."""
    from course_utils.grading.authoring.copying import lesson_corpus, task_copies

    lessons = lesson_corpus(course.root / "notebooks")
    return {
        a: sum(
            t.points
            for nb in course.notebooks(a)
            for t in task_copies(course.source_notebook(a, nb), a, lessons)
            if t.passable
        )
        for a in assignments
    }


def grading_figures(course: Course, assignments: list[str]) -> dict[str, dict]:
    """Grade each assignment's solution ("solved") and untouched release in a copy of the course."""
    from course_utils.grading.authoring.samples import solved
    from course_utils.grading.pipeline.autograde import autograde
    from course_utils.grading.pipeline.release import release
    from course_utils.grading.pipeline.results import load_result, result_totals
    from course_utils.grading.runner.sandbox import SandboxUnavailable, probe

    try:
        probe()
        sandboxed = True
    except SandboxUnavailable:
        sandboxed = False
    with tempfile.TemporaryDirectory(prefix="course-stats-") as tmp:
        shutil.copy(course.root / "nbgrader_config.py", tmp)
        for assignment in assignments:
            shutil.copytree(course.source_dir / assignment, Path(tmp) / course.coursedir.source_directory / assignment)
        copy = Course.load(tmp)
        copy.limits = course.limits
        release(copy, assignments)
        for assignment in assignments:
            for notebook in copy.notebooks(assignment):
                source = nbformat.read(copy.source_notebook(assignment, notebook), as_version=4)
                released = nbformat.read(
                    copy.root / copy.coursedir.release_directory / assignment / f"{notebook}.ipynb", as_version=4
                )
                for student, nb in (("solved", solved(released, source)), ("untouched", released)):
                    folder = copy.submitted_dir / student / assignment
                    folder.mkdir(parents=True, exist_ok=True)
                    nbformat.write(nb, folder / f"{notebook}.ipynb")
        autograde(copy, assignments, sandboxed=sandboxed, progress=False)
        figures = {}
        for assignment in assignments:
            solution, release_run = (load_result(copy, assignment, s) for s in ("solved", "untouched"))
            figures[assignment] = {
                "sandboxed": sandboxed,
                "solution_seconds": sum(nb["seconds"] for nb in solution["notebooks"].values()),
                "solution_score": "{:g}/{:g}".format(*result_totals(solution)),
                "release_score": "{:g}/{:g}".format(*result_totals(release_run)),
            }
    return figures


def stats(course: Course, assignments: list[str] | None = None, grade: bool = True) -> str:
    """A Markdown table, one row per assignment and a total (see the module docstring)."""
    assignments = assignments or course.assignments()
    counts = {a: static_counts(course, a) for a in assignments}
    for assignment, points in copyable_points(course, assignments).items():
        counts[assignment]["copyable"] = points
    graded = grading_figures(course, assignments) if grade else {}
    header = [
        "exercise",
        "tasks",
        "points",
        "visible checks",
        "hidden records",
        "constraint checks",
        "points passable by copying",
    ]
    if graded:
        header += ["grading time of the solution (s)", "solution scores", "untouched release scores"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for assignment in assignments:
        c = counts[assignment]
        row = [
            assignment,
            c["tasks"],
            f"{c['points']:g}",
            c["visible"],
            c["hidden"],
            c["constraints"],
            f"{c['copyable']:g}",
        ]
        if graded:
            g = graded[assignment]
            row += [f"{g['solution_seconds']:.1f}", g["solution_score"], g["release_score"]]
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    total = [
        sum(c[k] for c in counts.values()) for k in ("tasks", "points", "visible", "hidden", "constraints", "copyable")
    ]
    row = [
        "**total**",
        total[0],
        f"{total[1]:g}",
        total[2],
        total[3],
        total[4],
        f"{total[5]:g} ({total[5] / (total[1] or 1):.0%})",
    ]
    if graded:
        row += [f"{sum(g['solution_seconds'] for g in graded.values()):.1f}", "", ""]
    lines.append("| " + " | ".join(str(x) for x in row) + " |")
    if graded:
        sandboxed = all(g["sandboxed"] for g in graded.values())
        lines.append(f"\n(graded by the course's pipeline, {'sandboxed' if sandboxed else 'WITHOUT the sandbox'})")
    return "\n".join(lines)
