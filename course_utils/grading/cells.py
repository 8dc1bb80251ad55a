"""nbgrader's cell metadata and the course's hidden-test markers, read in one place for the grader.

    >>> [cell.grade_id for cell in graded_cells(nbformat.read(path, as_version=4))]  # doctest: +SKIP
    ['ex01_arange_matrix', ...]
    >>> HiddenMarkers().split("check(f(1), 2)\\n### BEGIN HIDDEN TESTS\\nrecord(...)\\n### END HIDDEN TESTS")
    ('check(f(1), 2)', 'record(...)')

A graded task in a source notebook is a locked markdown prompt, an answer cell (``solution: true``) and
a locked test cell (``grade: true``) whose hidden region sits between the markers that nbgrader's
``ClearHiddenTests`` removes from the release (configured in ``nbgrader_config.py``). The learner's Validate
(``lab.validate``, which ships to students without the grader) reads the same metadata with nbgrader's own
helpers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass(frozen=True)
class GradedCell:
    """A grade cell of the instructor's source notebook."""

    grade_id: str
    points: float
    autograded: bool  # an autograder test cell (False: manually graded answer)
    answer_id: str | None  # the solution cell before it (where nbgrader keeps comments)


def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata ({} when it has none, or something that is not a dict).

    >>> nbgrader_meta(nbformat.v4.new_code_cell("x = 1"))
    {}
    """
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def grade_id(cell) -> str | None:
    """The cell's nbgrader grade id, if it has a usable one."""
    value = nbgrader_meta(cell).get("grade_id")
    return value if isinstance(value, str) else None


def is_test_cell(cell) -> bool:
    """True for an autograder test cell: graded, not a solution, code."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.get("cell_type") == "code"


def is_answer_cell(cell) -> bool:
    """True for a cell the learner writes (``solution: true``)."""
    return bool(nbgrader_meta(cell).get("solution"))


def read_notebook(notebook) -> nbformat.NotebookNode:
    """``notebook`` itself, or the notebook read from a path."""
    if isinstance(notebook, (str, os.PathLike)):
        return nbformat.read(Path(notebook), as_version=4)
    return notebook


def graded_cells(notebook) -> list[GradedCell]:
    """The grade cells of a source notebook (or its path) in order, each tied to the answer cell it grades."""
    cells, last_answer = [], None
    for cell in read_notebook(notebook).cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            last_answer = meta.get("grade_id")
        if meta.get("grade"):
            cells.append(GradedCell(meta["grade_id"], float(meta.get("points", 0)), is_test_cell(cell), last_answer))
    return cells


def answer_sources(notebook) -> dict[str, str]:
    """grade id -> source of every answer cell of a notebook (or its path)."""
    return {grade_id(c): c.source for c in read_notebook(notebook).cells if is_answer_cell(c) and grade_id(c)}


@dataclass(frozen=True)
class HiddenMarkers:
    """The lines that open and close a hidden-test region (a line *containing* one is a marker, as in nbgrader).

    >>> HiddenMarkers.from_config(Course.load(".").config).begin  # doctest: +SKIP
    'BEGIN HIDDEN TESTS'
    """

    begin: str = "BEGIN HIDDEN TESTS"
    end: str = "END HIDDEN TESTS"

    @classmethod
    def from_config(cls, config) -> HiddenMarkers:
        """The markers nbgrader's ``ClearHiddenTests`` uses under this traitlets config."""
        section = config.get("ClearHiddenTests", {}) if config is not None else {}
        return cls(section.get("begin_test_delimeter", cls.begin), section.get("end_test_delimeter", cls.end))

    def split(self, source: str) -> tuple[str, str]:
        """(visible part, hidden part) of a cell's source; the marker lines belong to neither."""
        visible, hidden, inside = [], [], False
        for line in source.splitlines():
            if self.begin in line:
                inside = True
            elif self.end in line:
                inside = False
            else:
                (hidden if inside else visible).append(line)
        return "\n".join(visible), "\n".join(hidden)

    def visible_part(self, source: str) -> str:
        return self.split(source)[0]

    def hidden_part(self, source: str) -> str:
        return self.split(source)[1]

    def hidden_lines(self, notebook, min_length: int = 8) -> set[str]:
        """The distinctive lines (stripped, at least ``min_length`` characters) of every hidden region."""
        return {
            line.strip()
            for cell in read_notebook(notebook).cells
            for line in self.hidden_part(cell.source).splitlines()
            if len(line.strip()) >= min_length
        }
