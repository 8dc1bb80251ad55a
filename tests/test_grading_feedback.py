"""Feedback never shows a hidden test: not its source, not an output that quotes it."""
from __future__ import annotations

import nbformat

from course_utils.grading.cells import HiddenMarkers
from course_utils.grading.feedback import REMOVED, scrub

HIDDEN = 'record("ex_a/secret_input", answer(torch.tensor([7.0, -3.0])))'


def _notebooks(tmp_path):
    test = nbformat.v4.new_code_cell(f"check(answer(1), 2)\n### BEGIN HIDDEN TESTS\n{HIDDEN}\n### END HIDDEN TESTS")
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "ex_a", "locked": True, "points": 1}
    answer = nbformat.v4.new_code_cell("def answer(x): ...")
    answer.metadata["nbgrader"] = {"grade": False, "solution": True, "grade_id": "ex_a_answer", "locked": False}
    nbformat.write(nbformat.v4.new_notebook(cells=[answer, test]), tmp_path / "source.ipynb")
    leak = nbformat.v4.new_output("stream", name="stdout", text=f"stolen: {HIDDEN}\n")
    answer.outputs = [leak, nbformat.v4.new_output("stream", name="stdout", text="fine\n")]
    test.outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="x",
                                           traceback=[f"----> 3 {HIDDEN}"])]
    return tmp_path / "source.ipynb", nbformat.v4.new_notebook(cells=[answer, test])


def test_hidden_lines_are_read_from_the_source(tmp_path):
    source, _ = _notebooks(tmp_path)
    assert HiddenMarkers().hidden_lines(source) == {HIDDEN}


def test_scrub_removes_hidden_source_tracebacks_and_quoting_outputs(tmp_path):
    source, graded = _notebooks(tmp_path)
    scores = {"ex_a": {"score": 0.0, "max_score": 1.0, "message": "hidden test 'secret_input' failed"}}
    nb = scrub(graded, scores, HiddenMarkers().hidden_lines(source))
    text = nbformat.writes(nb)
    assert HIDDEN not in text and "7.0, -3.0" not in text
    assert REMOVED.strip() in text and "fine" in text
    assert nb.cells[1].outputs[0]["text"].startswith("0 / 1: hidden test 'secret_input' failed")
