"""``feedback``: one HTML report per student and notebook, built so that no hidden test can reach it.

    >>> paths = feedback(Course.load("."), "01_tensors_vs_numpy")  # doctest: +SKIP

The report shows the learner's *own* notebook as submitted: their cells with the outputs of their own run,
which only ever saw the release (no hidden test ran there, so nothing derived from one, encoded or not,
can be in it). Locked cells show the release's text; each test cell shows its visible part and the
trusted verdict, nothing else. A summary table of points and comments comes first.

Everything the learner controls is made safe before rendering (``safe_html``: nh3, no script, handler or
javascript: URL) and the page forbids scripts with a Content-Security-Policy. Its size is bounded: long
markdown cells are cut, outputs stop after ``OUTPUT_BUDGET`` bytes. Each page is rendered in a worker
process with a time limit; a page that takes too long is replaced by the summary alone.
"""
from __future__ import annotations

import html
import json
import multiprocessing
import os
from pathlib import Path

import nbformat

from course_utils.atomic import write_atomically
from course_utils.grading.cells import HiddenMarkers, grade_id, is_test_cell, nbgrader_meta, read_notebook
from course_utils.grading.course import Course
from course_utils.grading.pipeline.results import load_result, result_notes, result_totals
from course_utils.grading.pipeline.safe_html import safe_notebook, with_csp

OUTPUT_BUDGET = 1 * 2**20      # bytes of the learner's outputs a report shows
MARKDOWN_CHARS = 20_000        # longest markdown cell shown in full
RENDER_SECONDS = 60            # time limit for rendering one report
CUT = "[grader: the rest of this output is not shown in feedback]"


def _points(score: dict) -> str:
    got = "graded by hand" if score["score"] is None else f"{score['score']:g}"
    return f"{got} / {score['max_score']:g}"


def _summary_cell(result: dict, notebook: str):
    entry = result["notebooks"][notebook]
    rows = "".join(f"<tr><td>{html.escape(c['grade_id'])}</td><td>{_points(c)}</td>"
                   f"<td><pre>{html.escape(c['message'])}</pre></td></tr>" for c in entry["cells"])
    score, top = result_totals(result)
    notes = result_notes({"notebooks": {notebook: entry}})
    lines = [f"# Feedback: {html.escape(notebook)}", f"**{html.escape(result['student'])}**: {score:g} / {top:g} "
             f"points for {html.escape(result['assignment'])}."]
    if notes:
        lines.append("**Note:** " + html.escape("; ".join(notes)))
    lines.append(f"<table><tr><th>task</th><th>points</th><th>comment</th></tr>{rows}</table>")
    return nbformat.v4.new_markdown_cell("\n\n".join(lines))


def _bounded(nb) -> None:
    """Cut long markdown and stop showing outputs once ``OUTPUT_BUDGET`` is spent."""
    budget = OUTPUT_BUDGET
    for cell in nb.cells:
        if cell.cell_type == "markdown" and len(cell.source) > MARKDOWN_CHARS:
            cell.source = cell.source[:MARKDOWN_CHARS] + "\n\n" + CUT
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            budget -= len(json.dumps(output, default=str))
            if budget < 0:
                kept.append(nbformat.v4.new_output("stream", name="stderr", text=CUT + "\n"))
                break
            kept.append(output)
        cell.outputs = kept


def learners_view(submitted, source, scores: dict[str, dict], markers: HiddenMarkers = HiddenMarkers()):
    """The notebook a report shows: the learner's cells and own outputs; locked cells as released; each
    test cell's visible part with its verdict as its only output (see the module docstring)."""
    trusted = {grade_id(c): c for c in source.cells if grade_id(c)}
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": source.metadata.get("kernelspec", {})})
    for cell in submitted.cells:
        gid = grade_id(cell)
        original = trusted.get(gid)
        if original is not None and (nbgrader_meta(original).get("locked") or is_test_cell(original)):
            cell = nbformat.from_dict(dict(original))
            cell.source = markers.visible_part(original.source)
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        if cell.cell_type == "code" and original is not None and is_test_cell(original):
            score = scores.get(gid)
            text = "(not graded)" if score is None else f"{_points(score)}: {score['message']}"
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
        nb.cells.append(cell)
    return nb


def _render(nb_json: str) -> str:
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(template_name="classic").from_notebook_node(nbformat.reads(nb_json, as_version=4))
    return with_csp(body)


def feedback_notebook(course: Course, result: dict, notebook: str):
    """The (safe, bounded) notebook behind one report, summary first."""
    assignment = result["assignment"]
    source = read_notebook(course.source_notebook(assignment, notebook))
    submitted_path = course.submitted_dir / result["student"] / assignment / f"{notebook}.ipynb"
    try:  # untrusted input: anything that is not a notebook of a sane size is shown as empty
        if submitted_path.is_symlink() or submitted_path.stat().st_size > course.limits.notebook_bytes:
            raise ValueError("missing, a link, or too big")
        submitted = nbformat.read(submitted_path, as_version=4)
        if len(submitted.cells) > course.limits.max_cells:
            raise ValueError("too many cells")
    except Exception:  # noqa: BLE001 - not JSON, wrong schema, wrong types...
        submitted = nbformat.v4.new_notebook()
    scores = {c["grade_id"]: c for c in result["notebooks"][notebook]["cells"]}
    nb = learners_view(submitted, source, scores, course.markers)
    safe_notebook(nb)
    _bounded(nb)
    nb.cells.insert(0, _summary_cell(result, notebook))
    return nb


def feedback_html(course: Course, result: dict, notebook: str) -> str:
    """The HTML report of one student's notebook (rendered here, without a time limit)."""
    return _render(nbformat.writes(feedback_notebook(course, result, notebook)))


def _summary_only(result: dict, notebook: str) -> str:
    nb = nbformat.v4.new_notebook(cells=[_summary_cell(result, notebook), nbformat.v4.new_markdown_cell(
        "(Your notebook is not shown: it took too long to display. Your scores above are complete.)")])
    return _render(nbformat.writes(nb))


def _render_all(pages: list[str], workers: int) -> list[str | None]:
    """Each notebook JSON rendered in a worker process; None for one that ran past ``RENDER_SECONDS``."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    rendered: list[str | None] = []
    while len(rendered) < len(pages):
        pool = context.Pool(max(1, min(workers, len(pages) - len(rendered))))
        try:
            jobs = [pool.apply_async(_render, (nb_json,)) for nb_json in pages[len(rendered):]]
            for job in jobs:
                try:
                    rendered.append(job.get(RENDER_SECONDS))
                except multiprocessing.TimeoutError:
                    rendered.append(None)
                    break  # the stuck worker goes with this pool; the rest render in a fresh one
        finally:
            pool.terminate()
    return rendered


def feedback(course: Course, assignment: str, students: list[str] | None = None,
             workers: int | None = None) -> list[Path]:
    """Write ``feedback/<student>/<assignment>/<notebook>.html`` for every graded student, in parallel."""
    pages = []
    for student in students or course.submitted_students(assignment):
        result = load_result(course, assignment, student)
        for notebook in (result or {}).get("notebooks", {}):
            pages.append((result, notebook, nbformat.writes(feedback_notebook(course, result, notebook))))
    rendered = _render_all([nb_json for _, _, nb_json in pages], workers or os.cpu_count() or 1) if pages else []
    written = []
    for (result, notebook, _), page in zip(pages, rendered):
        path = course.feedback_dir / result["student"] / assignment / f"{notebook}.html"
        written.append(write_atomically(path, page if page is not None else _summary_only(result, notebook)))
    return written
