"""Shared pytest set-up. Notebooks under tests/ are data (sample submissions), never nbval tests.

``tiny_course`` is a whole nbgrader course in a temporary folder, with the repository's
``nbgrader_config.py`` and one assignment ``hw`` of one notebook with one task (``ex_double``: write
``double(x)``; a visible check and a hidden record). The grading modules' unit tests run on it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

collect_ignore_glob = ["*.ipynb", "*/*.ipynb", "*/*/*.ipynb", "*/*/*/*.ipynb"]

REPO = Path(__file__).resolve().parents[1]
TINY_ANSWER = "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
TINY_TEST = ("import torch\nfrom course_utils.checks import check_tensor, record\n\n"
             "check_tensor(double(torch.ones(2)), torch.full((2,), 2.0), key=\"ex_double/visible\")\n"
             "### BEGIN HIDDEN TESTS\nrecord(\"ex_double/hidden\", double(torch.arange(3.0)))\n### END HIDDEN TESTS\n")


def tiny_notebook(answer: str = TINY_ANSWER) -> nbformat.NotebookNode:
    """The ``hw`` source notebook: a locked prompt, the answer cell and the locked test cell (2 points)."""
    prompt = nbformat.v4.new_markdown_cell("Write `double(x)`, returning `2 * x`.")
    prompt.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True,
                                   "grade_id": "ex_double_prompt", "schema_version": 3}
    cell = nbformat.v4.new_code_cell(answer)
    cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False,
                                 "grade_id": "ex_double_answer", "schema_version": 3}
    test = nbformat.v4.new_code_cell(TINY_TEST)
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 2,
                                 "grade_id": "ex_double", "schema_version": 3}
    nb = nbformat.v4.new_notebook(cells=[prompt, cell, test])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def make_tiny_course(root: Path):
    """A course under ``root`` with the repository's config and assignment ``hw`` (notebook ``hw``)."""
    from course_utils.grading.course import Course

    (root / "solutions" / "hw").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    nbformat.write(tiny_notebook(), root / "solutions" / "hw" / "hw.ipynb")
    return Course.load(root)


@pytest.fixture()
def tiny_course(tmp_path):
    """A fresh tiny course (see the module docstring) for one test."""
    return make_tiny_course(tmp_path / "course")


def submit(course, student: str, answer: str | None, assignment: str = "hw"):
    """Put ``student``'s ``hw`` notebook (the release with this answer) into the course's submitted folder."""
    nb = tiny_notebook(answer if answer is not None else "def double(x):\n    raise NotImplementedError()\n")
    folder = course.submitted_dir / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "hw.ipynb")
    return folder
