"""``feedback``: one HTML report per student and notebook, built so that no hidden test can reach it.

    >>> paths = feedback(Course.load("."), "01_tensors_vs_numpy")  # doctest: +SKIP

The report shows the learner's *own* notebook as submitted: their cells with the outputs of their own run,
which only ever saw the release (no hidden test ran there, so nothing derived from one, encoded or not,
can be in it). Locked cells show the release's text; each test cell shows its visible part and the
trusted verdict, nothing else. A summary table of points and comments comes first.

Everything the learner controls is made safe before rendering (``safe_html``: nh3, no script, handler,
javascript: URL or image from elsewhere; every field normalised) and the page forbids scripts and loads from
elsewhere with a Content-Security-Policy. Its size is bounded: long markdown cells are cut, outputs stop
after ``OUTPUT_BUDGET`` bytes. Each page is made safe and rendered in a worker process with a time limit
(``RENDER_SECONDS``, at most twice ``c.Limits.render_seconds``); a page that takes too long, or that fails to
render, is replaced by the summary alone, and a submission that is not a valid notebook is shown as such.
No page stops another's.
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

OUTPUT_BUDGET = 1 * 2**20  # bytes of the learner's outputs a report shows
MARKDOWN_CHARS = 20_000  # longest markdown cell shown in full
RENDER_SECONDS = 60  # time limit for rendering one report
CUT = "[grader: the rest of this output is not shown in feedback]"


def _points(score: dict) -> str:
    got = "graded by hand" if score["score"] is None else f"{score['score']:g}"
    return f"{got} / {score['max_score']:g}"


def _summary_cell(result: dict, notebook: str):
    entry = result["notebooks"][notebook]
    rows = "".join(
        f"<tr><td>{html.escape(c['grade_id'])}</td><td>{_points(c)}</td>"
        f"<td><pre>{html.escape(c['message'])}</pre></td></tr>"
        for c in entry["cells"]
    )
    score, top = result_totals(result)
    notes = result_notes({"notebooks": {notebook: entry}})
    lines = [
        f"# Feedback: {html.escape(notebook)}",
        f"**{html.escape(result['student'])}**: {score:g} / {top:g} points for {html.escape(result['assignment'])}.",
    ]
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


def learners_view(submitted, source, scores: dict[str, dict], markers: HiddenMarkers | None = None):
    """The notebook a report shows: the learner's cells and own outputs; locked cells as released; each
    test cell's visible part with its verdict as its only output (see the module docstring)."""
    markers = markers or HiddenMarkers()
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
    """The page of a notebook whose first cell is the (trusted) summary: every other cell made safe and
    bounded first. Runs in a worker process (``_render_all``)."""
    from nbconvert import HTMLExporter

    nb = nbformat.reads(nb_json, as_version=4)
    summary, nb.cells = nb.cells[:1], nb.cells[1:]
    safe_notebook(nb)
    _bounded(nb)
    nb.cells = summary + nb.cells
    body, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    return with_csp(body)


def _submitted(course: Course, path: Path):
    """The submitted notebook, or None unless it is a valid notebook of a sane size (untrusted input)."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > course.limits.notebook_bytes:
            return None
        errors: dict = {}
        submitted = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4, capture_validation_error=errors)
        if errors or len(submitted.cells) > course.limits.max_cells:
            return None
        nbformat.validate(submitted)
        return submitted
    except Exception:  # noqa: BLE001 - not UTF-8, not JSON, wrong schema, nested too deep...
        return None


def feedback_notebook(course: Course, result: dict, notebook: str):
    """The notebook behind one report, summary first (the rest is made safe and bounded when rendered)."""
    assignment = result["assignment"]
    source = read_notebook(course.source_notebook(assignment, notebook))
    submitted = _submitted(course, course.submitted_dir / result["student"] / assignment / f"{notebook}.ipynb")
    scores = {c["grade_id"]: c for c in result["notebooks"][notebook]["cells"]}
    if submitted is None:
        nb = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_markdown_cell(
                    "(Your notebook is not shown: the file you handed in is not a valid notebook.)"
                )
            ]
        )
    else:
        nb = learners_view(submitted, source, scores, course.markers)
    nb.cells.insert(0, _summary_cell(result, notebook))
    return nb


def feedback_html(course: Course, result: dict, notebook: str) -> str:
    """The HTML report of one student's notebook (rendered here, without a time limit)."""
    return _render(nbformat.writes(feedback_notebook(course, result, notebook)))


def _summary_only(result: dict, notebook: str, why: str = "it took too long to display") -> str:
    nb = nbformat.v4.new_notebook(
        cells=[
            _summary_cell(result, notebook),
            nbformat.v4.new_markdown_cell(f"(Your notebook is not shown: {why}. Your scores above are complete.)"),
        ]
    )
    return _render(nbformat.writes(nb))


def _render_all(pages: list[str | None], workers: int, seconds: float) -> list[str | None]:
    """Each notebook JSON rendered in a worker process; None for one that failed or ran past ``seconds``."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    rendered: list[str | None] = []
    while len(rendered) < len(pages):
        pool = context.Pool(max(1, min(workers, len(pages) - len(rendered))))
        try:
            jobs = [
                None if nb_json is None else pool.apply_async(_render, (nb_json,)) for nb_json in pages[len(rendered) :]
            ]
            for job in jobs:
                if job is None:
                    rendered.append(None)
                    continue
                try:
                    rendered.append(job.get(seconds))
                except multiprocessing.TimeoutError:
                    rendered.append(None)
                    break  # the stuck worker goes with this pool; the rest render in a fresh one
                except Exception:  # noqa: BLE001 - this page failed to render: the summary alone, the rest go on
                    rendered.append(None)
        finally:
            pool.terminate()
    return rendered


def _page_json(course: Course, result: dict, notebook: str) -> str | None:
    try:
        return nbformat.writes(feedback_notebook(course, result, notebook))
    except Exception:  # noqa: BLE001 - a page that cannot even be put together is the summary alone
        return None


def feedback(
    course: Course, assignment: str, students: list[str] | None = None, workers: int | None = None
) -> list[Path]:
    """Write ``feedback/<student>/<assignment>/<notebook>.html`` for every graded student, in parallel."""
    pages = []
    for student in students or course.submitted_students(assignment):
        result = load_result(course, assignment, student)
        for notebook in (result or {}).get("notebooks", {}):
            pages.append((result, notebook, _page_json(course, result, notebook)))
    seconds = min(RENDER_SECONDS, 2 * course.limits.render_seconds)
    rendered = (
        _render_all([nb_json for _, _, nb_json in pages], workers or os.cpu_count() or 1, seconds) if pages else []
    )
    written = []
    for (result, notebook, _), page in zip(pages, rendered):
        path = course.feedback_dir / result["student"] / assignment / f"{notebook}.html"
        if page is None:
            page = _summary_only(result, notebook, "it took too long to display, or could not be displayed")
        written.append(write_atomically(path, page))
    return written
