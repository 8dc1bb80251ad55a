"""Validate for learners: a per-task summary (passed or failed, points) above short details.

nbgrader's Validate button posts to ``/assignments/validate``; ``course_utils.grading.lab.server`` answers it
with ``validate_notebook`` below instead of nbgrader's own handler. The answer keeps nbgrader's JSON
shape, so nbgrader's unchanged dialog shows it: the first entry of ``failed`` is the summary (its label
hidden by a style in the entry), each later entry is one failed task with its error's last lines.

    >>> validate_notebook(Path("exercises/01_tensors_vs_numpy/01_tensors_vs_numpy_exercises.ipynb"))  # doctest: +SKIP
    {'failed': [{'source': 'Summary: 0 of 5 tasks pass, 0 / 10 points', ...}, ...]}

A notebook without graded tasks (a lesson) is not run: the answer says there is nothing to grade.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader import utils
from nbgrader.validator import Validator

from course_utils.wording import unanswered

#: hides the dialog's "The following cell failed:" label above the summary entry (the first entry)
_HIDE_FIRST_LABEL = "<style>#validation-message > div:first-child { display: none; }</style>"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NOTHING_TO_GRADE = (
    "This notebook has no graded tasks, so there is nothing to validate. "
    "Validate checks the exercise notebooks (exercises/, or an assignment you fetched)."
)


@dataclass
class TaskResult:
    """One graded test cell after running the notebook."""

    task: str
    points: float
    max_points: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.points >= self.max_points


def graded_tasks(nb) -> list:
    """The notebook's graded code cells (nbgrader ``grade`` cells that are not answers).

    >>> graded_tasks(nbformat.v4.new_notebook())
    []
    """
    return [c for c in nb.cells if c.cell_type == "code" and utils.is_grade(c) and not utils.is_solution(c)]


def _task_titles(nb) -> dict[str, str]:
    """grade_id -> the title of the task heading above it (``## Task 1 · ...``), else the grade id."""
    titles, heading = {}, None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#+\s*(.+)$", cell.source, re.M)
            heading = match.group(1).strip() if match else heading
        elif utils.is_grade(cell) and not utils.is_solution(cell):
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            titles[grade_id] = heading or grade_id
            heading = None
    return titles


def error_detail(cell, lines: int = 6) -> str:
    """The last ``lines`` lines of a cell's error (colour codes removed), or its stderr, or ''.

    >>> cell = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("error", ename="NotImplementedError",
    ...                                  evalue="", traceback=["Traceback ...", "NotImplementedError: "])])
    >>> error_detail(cell)[:60]
    'This task is not written yet: replace `raise NotImplementedE'
    """
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            if output.ename == "NotImplementedError":  # the one sentence the test cell and the grade say too
                return _ANSI.sub("", output.evalue).strip() or unanswered()
            text = _ANSI.sub("", "\n".join(output.traceback)).strip().splitlines()
            return "\n".join(text[-lines:])
    stderr = [o.text for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == "stderr"]
    return _ANSI.sub("", "".join(stderr)).strip()


def task_results(nb) -> list[TaskResult]:
    """Points and details of each graded task of an executed notebook."""
    titles, results = _task_titles(nb), []
    for cell in graded_tasks(nb):
        score, top = utils.determine_grade(cell, None)
        detail = error_detail(cell) if score < top else ""
        results.append(TaskResult(titles[cell.metadata["nbgrader"]["grade_id"]], score, top, detail))
    return results


def summary_entry(results: list[TaskResult]) -> dict:
    """The dialog's first entry: one line per task (passed/failed, points), the totals on top."""
    passed = sum(r.passed for r in results)
    got, top = sum(r.points for r in results), sum(r.max_points for r in results)
    rows = "".join(
        f"<tr><td>{'✔ passed' if r.passed else '✘ failed'}</td><td>{r.points:g} / {r.max_points:g}</td>"
        f"<td>{html.escape(r.task)}</td></tr>"
        for r in results
    )
    head = f"Summary: {passed} of {len(results)} tasks pass, {got:g} / {top:g} points"
    text = "\n".join(
        f"{'passed' if r.passed else 'FAILED'}  {r.points:g} / {r.max_points:g}  {r.task}" for r in results
    )
    table = f'{_HIDE_FIRST_LABEL}<table class="course-validate-summary">{rows}</table>'
    return {"source": head, "error": table, "raw_error": text}


class CourseValidator(Validator):
    """nbgrader's Validator, answering with the summary entry first and short details after it."""

    def validate(self, filename: str) -> dict:
        nb = nbformat.read(filename, as_version=4)
        if not graded_tasks(nb):
            return {"failed": [{"source": NOTHING_TO_GRADE, "error": _HIDE_FIRST_LABEL, "raw_error": ""}]}
        base = super().validate(filename)
        if "type_changed" in base or "changed" in base:
            return base  # a locked cell was edited: nbgrader's own explanation says which
        return self.last_results

    def _get_failed_cells(self, nb):
        # called by Validator.validate on the executed notebook: build our answer from the same run
        results = task_results(nb)
        details = [
            {
                "source": f"{r.task}: {r.points:g} / {r.max_points:g}",
                "error": html.escape(r.detail) or "some tests of this task failed",
                "raw_error": r.detail,
            }
            for r in results
            if not r.passed
        ]
        self.last_results = {"failed": [summary_entry(results)] + details}
        return super()._get_failed_cells(nb)


def validate_notebook(path: Path, config=None) -> dict:
    """Run ``path`` and return the dialog's answer (see the module docstring)."""
    return CourseValidator(config=config).validate(str(path))
