"""Feedback never shows a hidden test, never carries active content, and is bounded in size and time."""

from __future__ import annotations

import re
import time

import nbformat

from course_utils.grading.pipeline import feedback as feedback_module
from course_utils.grading.pipeline.feedback import (
    OUTPUT_BUDGET,
    feedback,
    feedback_html,
    learners_view,
)
from course_utils.grading.pipeline.results import write_result
from support import submit, tiny_notebook

HIDDEN_LINE = 'record("ex_double/hidden", double(torch.arange(3.0)))'
SCORES = {
    "ex_double": {
        "grade_id": "ex_double",
        "score": 0.0,
        "max_score": 2.0,
        "message": "1 of 2 tests failed:\n- hidden test 'hidden' failed: the result has the wrong values",
    }
}


def result_for(student: str) -> dict:
    cell = dict(SCORES["ex_double"], answer_id="ex_double_answer")
    return {
        "student": student,
        "assignment": "hw",
        "fingerprint": "f",
        "notebooks": {"hw": {"seconds": 1.0, "limits_hit": [], "problem": None, "cells": [cell]}},
    }


def test_the_report_shows_the_learners_own_run_and_only_the_verdict_under_a_test():
    submitted = tiny_notebook("def double(x):\n    return x\n")
    submitted.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="my own output\n")]
    submitted.cells[2].source = "print('all tests passed')  # the learner edited the locked test"
    submitted.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="all tests passed\n")]
    nb = learners_view(submitted, tiny_notebook(), SCORES)
    answer, test = nb.cells[1], nb.cells[2]
    assert answer.outputs[0]["text"] == "my own output\n"
    assert "check_tensor(double(torch.ones(2))" in test.source and "BEGIN HIDDEN" not in test.source
    assert HIDDEN_LINE not in test.source and "edited" not in test.source
    assert [o["text"] for o in test.outputs] == [f"0 / 2: {SCORES['ex_double']['message']}\n"]


def test_nothing_of_the_graded_run_reaches_the_report(tiny_course):
    """The attack: a hook in the graded run copies the test cells' source (hidden tests included) into an
    earlier output, encoded. The report is built from the submission as handed in, which never saw them."""
    folder = submit(tiny_course, "mallory", "def double(x):\n    return 2 * x\n")
    autograded = tiny_course.autograded_dir / "mallory" / "hw"
    autograded.mkdir(parents=True)
    leaked = tiny_notebook()
    leaked.cells[1].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=HIDDEN_LINE.encode().hex() + "\n" + HIDDEN_LINE)
    ]
    nbformat.write(leaked, autograded / "hw.ipynb")
    write_result(tiny_course, result_for("mallory"))
    page = feedback_html(tiny_course, result_for("mallory"), "hw")
    assert HIDDEN_LINE not in page and HIDDEN_LINE.encode().hex() not in page and "arange(3.0)" not in page
    assert (folder / "hw.ipynb").is_file()


def test_no_script_event_handler_or_javascript_url_survives(tiny_course):
    nb = tiny_notebook("def double(x):\n    return 2 * x\n")
    nb.cells.insert(
        0,
        nbformat.v4.new_markdown_cell(
            '<script>alert("md")</script><img src=x onerror="alert(1)"> [link](javascript:alert(2)) '
            '<a href="javascript:alert(3)">a</a>'
        ),
    )
    nb.cells[2].outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/html": "<b>bold</b><script>alert(4)</script><svg onload=alert(5)></svg>"}
        ),
        nbformat.v4.new_output("display_data", data={"application/javascript": "alert(6)"}),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg><script>alert(7)</script></svg>"}),
        nbformat.v4.new_output("display_data", data={"image/png": '"><script>alert(8)</script>'}),
    ]
    folder = tiny_course.submitted_dir / "eve" / "hw"
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "hw.ipynb")
    page = feedback_html(tiny_course, result_for("eve"), "hw")
    assert not re.search(r"<script[^>]*>[^<]*alert", page), "a script of the learner's survived"
    assert not re.search(r"<[^>]+\son\w+\s*=", page), "an event handler survived"
    assert not re.search(r"(href|src)\s*=\s*[\"']?\s*javascript:", page, re.I), "a javascript: URL survived"
    assert "<svg" not in page and "alert(6)" not in page and "alert(8)" not in page
    assert "<b>bold</b>" in page and "Content-Security-Policy" in page and "script-src 'none'" in page


def test_a_huge_submission_gives_a_bounded_report(tiny_course):
    nb = tiny_notebook("def double(x):\n    return 2 * x\n")
    nb.cells += [
        nbformat.v4.new_code_cell(
            "print(1)", outputs=[nbformat.v4.new_output("stream", name="stdout", text="x" * 10_000)]
        )
        for _ in range(400)
    ]
    nb.cells.append(nbformat.v4.new_markdown_cell("y" * 200_000))
    folder = tiny_course.submitted_dir / "big" / "hw"
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "hw.ipynb")
    page = feedback_html(tiny_course, result_for("big"), "hw")
    assert len(page) < OUTPUT_BUDGET + 1_000_000
    assert "the rest of this output is not shown in feedback" in page


REAL_RENDER = feedback_module._render


def slow_for_slow(nb_json: str) -> str:
    """A renderer that hangs on the student called "slow" (a stand-in for a pathological notebook)."""
    if "render-me-slowly" in nb_json:
        time.sleep(30)
    return REAL_RENDER(nb_json)


def test_a_report_that_takes_too_long_becomes_the_summary_alone(tiny_course, monkeypatch):
    for student in ("quick", "slow"):
        marker = "  # render-me-slowly" if student == "slow" else ""
        submit(tiny_course, student, f"def double(x):\n    return 2 * x{marker}\n")
        write_result(tiny_course, result_for(student))
    monkeypatch.setattr(feedback_module, "_render", slow_for_slow)
    monkeypatch.setattr(feedback_module, "RENDER_SECONDS", 5)
    pages = {p.parent.parent.name: p.read_text() for p in feedback(tiny_course, "hw")}
    assert "took too long to display" in pages["slow"] and "0 / 2" in pages["slow"]
    assert "took too long" not in pages["quick"] and "check_tensor" in pages["quick"]
