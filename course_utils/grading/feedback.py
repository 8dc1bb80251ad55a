"""``feedback``: one HTML report per student and notebook that never reveals hidden tests.

Test cells lose their hidden-test region (between the course's markers) and all their outputs, which
are replaced by the trusted verdict; any other output that quotes a line of a hidden test is removed
(a traceback, or a student's hook that printed later cells' source).

    >>> paths = feedback(Course.load("."), "01_tensors_vs_numpy")  # doctest: +SKIP
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from course_utils.atomic import write_atomically
from course_utils.grading.cells import HiddenMarkers, grade_id, is_test_cell, nbgrader_meta
from course_utils.grading.course import Course
from course_utils.grading.results import load_result, result_notes, result_totals

REMOVED = "[output removed by the grader: it quoted a hidden test]\n"


def _quotes_hidden(output, secret: set[str]) -> bool:
    text = json.dumps(output, default=str)
    return any(json.dumps(line)[1:-1] in text or line in text for line in secret)


def scrub(nb, scores: dict[str, dict], secret: set[str], markers: HiddenMarkers = HiddenMarkers()):
    """Strip hidden tests from ``nb`` in place and replace test-cell outputs by verdicts."""
    for cell in nb.cells:
        is_test = bool(nbgrader_meta(cell).get("grade")) and not nbgrader_meta(cell).get("solution")
        if is_test:
            cell.source = markers.visible_part(cell.source)
        if cell.cell_type != "code":
            continue
        if is_test_cell(cell):
            score = scores.get(grade_id(cell))
            text = "(not graded)" if score is None else f"{_points(score)}: {score['message']}"
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
        else:
            cell.outputs = [REMOVED_OUTPUT() if _quotes_hidden(o, secret) else o for o in cell.outputs]
    return nb


def REMOVED_OUTPUT():
    return nbformat.v4.new_output("stream", name="stderr", text=REMOVED)


def _points(score: dict) -> str:
    got = "graded by hand" if score["score"] is None else f"{score['score']:g}"
    return f"{got} / {score['max_score']:g}"


def _summary_cell(result: dict, notebook: str):
    entry = result["notebooks"][notebook]
    rows = "".join(f"<tr><td>{html.escape(c['grade_id'])}</td><td>{_points(c)}</td>"
                   f"<td><pre>{html.escape(c['message'])}</pre></td></tr>" for c in entry["cells"])
    score, top = result_totals(result)
    notes = result_notes({"notebooks": {notebook: entry}})
    lines = [f"# Feedback: {html.escape(notebook)}", f"**{result['student']}**: {score:g} / {top:g} points for "
             f"{html.escape(result['assignment'])}."]
    if notes:
        lines.append("**Note:** " + html.escape("; ".join(notes)))
    lines.append(f"<table><tr><th>task</th><th>points</th><th>comment</th></tr>{rows}</table>")
    return nbformat.v4.new_markdown_cell("\n\n".join(lines))


def feedback_html(course: Course, result: dict, notebook: str) -> str:
    """The HTML report of one student's notebook."""
    assignment = result["assignment"]
    graded = course.autograded_dir / result["student"] / assignment / f"{notebook}.ipynb"
    nb = nbformat.read(graded, as_version=4) if graded.is_file() else nbformat.v4.new_notebook()
    scores = {c["grade_id"]: c for c in result["notebooks"][notebook]["cells"]}
    source = course.source_notebook(assignment, notebook)
    scrub(nb, scores, course.markers.hidden_lines(source), course.markers)
    nb.cells.insert(0, _summary_cell(result, notebook))
    body, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    return body


def feedback(course: Course, assignment: str, students: list[str] | None = None) -> list[Path]:
    """Write ``feedback/<student>/<assignment>/<notebook>.html`` for every graded student."""
    written = []
    for student in students or course.submitted_students(assignment):
        result = load_result(course, assignment, student)
        if result is None:
            continue
        for notebook in result["notebooks"]:
            path = course.feedback_dir / student / assignment / f"{notebook}.html"
            written.append(write_atomically(path, feedback_html(course, result, notebook)))
    return written
