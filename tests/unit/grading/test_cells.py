"""course_utils.grading.cells: nbgrader's cell metadata and the hidden-test markers, read one way everywhere."""

from __future__ import annotations

import nbformat

from course_utils.grading.cells import (
    HiddenMarkers,
    answer_sources,
    grade_id,
    graded_cells,
    is_answer_cell,
    is_test_cell,
    nbgrader_meta,
)
from course_utils.grading.course import Course
from support import REPO, tiny_notebook


def test_graded_cells_tie_each_test_to_the_answer_before_it():
    (cell,) = graded_cells(tiny_notebook())
    assert (cell.grade_id, cell.points, cell.autograded, cell.answer_id) == ("ex_double", 2.0, True, "ex_double_answer")


def test_graded_cells_reads_a_path_too(tmp_path):
    nbformat.write(tiny_notebook(), tmp_path / "x.ipynb")
    assert [c.grade_id for c in graded_cells(tmp_path / "x.ipynb")] == ["ex_double"]


def test_a_manually_graded_answer_is_graded_but_not_autograded():
    nb = tiny_notebook()
    nb.cells[1].metadata["nbgrader"].update(grade=True, points=3)
    manual, test = graded_cells(nb)
    assert (manual.grade_id, manual.autograded, manual.points) == ("ex_double_answer", False, 3.0)
    assert test.autograded


def test_metadata_that_is_missing_or_not_a_dict_reads_as_empty():
    cell = nbformat.v4.new_code_cell("x")
    assert nbgrader_meta(cell) == {} and grade_id(cell) is None
    cell.metadata["nbgrader"] = "garbage"
    assert nbgrader_meta(cell) == {} and not is_test_cell(cell) and not is_answer_cell(cell)
    cell.metadata["nbgrader"] = {"grade_id": 7}
    assert grade_id(cell) is None


def test_answer_sources_by_grade_id():
    assert answer_sources(tiny_notebook("def double(x):\n    return x + x\n")) == {
        "ex_double_answer": "def double(x):\n    return x + x\n"
    }


def test_markers_split_a_test_cell_into_visible_and_hidden_parts():
    source = "check(f(1), 2)\n### BEGIN HIDDEN TESTS\nrecord('a/b', f(3))\n### END HIDDEN TESTS\nprint('after')"
    assert HiddenMarkers().split(source) == ("check(f(1), 2)\nprint('after')", "record('a/b', f(3))")
    assert HiddenMarkers().split("no markers") == ("no markers", "")


def test_the_course_markers_come_from_nbgrader_config():
    config = Course.load(REPO).config
    assert Course.load(REPO).markers == HiddenMarkers(
        config.ClearHiddenTests.begin_test_delimeter, config.ClearHiddenTests.end_test_delimeter
    )
    custom = HiddenMarkers.from_config(
        {"ClearHiddenTests": {"begin_test_delimeter": "SECRET>", "end_test_delimeter": "<SECRET"}}
    )
    assert custom.split("a\nSECRET>\nb\n<SECRET") == ("a", "b")


def test_hidden_lines_are_the_distinctive_hidden_lines():
    assert HiddenMarkers().hidden_lines(tiny_notebook()) == {'record("ex_double/hidden", double(torch.arange(3.0)))'}
