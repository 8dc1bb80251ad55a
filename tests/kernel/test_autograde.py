"""course_utils.grading.pipeline.autograde, .gradebook, .feedback and .export on the tiny course, without the jail (the
end-to-end tests run the same pipeline sandboxed on the real exercises)."""

from __future__ import annotations

import csv

import pytest
from nbgrader.api import Gradebook

from course_utils.grading.pipeline.autograde import autograde
from course_utils.grading.pipeline.export import export
from course_utils.grading.pipeline.feedback import feedback
from course_utils.grading.pipeline.results import load_result, result_totals
from course_utils.wording import unanswered
from support import make_tiny_course, submit

ANSWERS = {"right": "def double(x):\n    return x + x\n", "wrong": "def double(x):\n    return x\n", "untouched": None}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_tiny_course(tmp_path_factory.mktemp("tiny") / "course")
    for student, answer in ANSWERS.items():
        submit(course, student, answer)
    (report,) = autograde(course, ["hw"], workers=2, sandboxed=False, progress=False)
    return course, report


def test_each_student_gets_what_the_answer_earns_with_a_reason(graded):
    course, report = graded
    assert sorted(report.graded) == sorted(ANSWERS) and report.reference_seconds > 0
    assert report.totals == {"right": (2.0, 2.0), "wrong": (0.0, 2.0), "untouched": (0.0, 2.0)}
    message = {s: load_result(course, "hw", s)["notebooks"]["hw"]["cells"][0]["message"] for s in ANSWERS}
    assert message["right"] == "all 2 tests passed"
    assert "visible check 'visible' failed: result has the wrong values" in message["wrong"]  # the learner's words
    # the failing visible check stopped the cell: the grade says so, as the test cell did
    assert "1 test did not run ('hidden'): the test cell stopped at the failure above" in message["wrong"]
    assert message["untouched"] == unanswered("double")  # what the test cell and Validate say


def test_the_gradebook_holds_the_scores_and_the_comments(graded):
    course, _ = graded
    with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        assert {s: gb.find_submission("hw", s).score for s in ANSWERS} == {"right": 2, "wrong": 0, "untouched": 0}
        comment = gb.find_comment("ex_double_answer", "hw", "hw", "wrong").auto_comment
    assert comment.startswith("[ex_double: failed]")


def test_an_unchanged_submission_is_not_graded_again_and_a_changed_one_is(graded):
    course, _ = graded
    (again,) = autograde(course, ["hw"], sandboxed=False, progress=False)
    assert again.graded == [] and sorted(again.reused) == sorted(ANSWERS)
    submit(course, "wrong", ANSWERS["right"])
    (fixed,) = autograde(course, ["hw"], sandboxed=False, progress=False)
    assert fixed.graded == ["wrong"] and result_totals(load_result(course, "hw", "wrong")) == (2.0, 2.0)


def test_feedback_shows_the_verdict_and_never_the_hidden_test(graded):
    course, _ = graded
    pages = feedback(course, "hw")
    assert sorted(p.parent.parent.name for p in pages) == sorted(ANSWERS)
    page = (course.feedback_dir / "untouched" / "hw" / "hw.html").read_text()
    assert "0 / 2" in page and "is not written yet" in page
    assert "ex_double/hidden" not in page and "arange(3.0)" not in page


def test_export_writes_one_row_per_student_and_task_and_a_histogram(graded):
    course, _ = graded
    csv_path, pngs = export(course)
    assert csv_path == course.export_dir / "grades.csv"
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["student"], r["task"]) for r in rows) == sorted((s, "ex_double") for s in ANSWERS)
    assert [p.name for p in pngs] == ["hw__ex_double.png"] and pngs[0].read_bytes()[:4] == b"\x89PNG"


def test_a_submission_from_the_exchange_shows_as_autograded_in_the_formgrader(tmp_path):
    """nbgrader's formgrader lists a submission as graded only when the gradebook holds the timestamp of its
    ``timestamp.txt`` (which the exchange writes); without it, it says "needs autograding"."""
    from nbgrader.apps import NbGraderAPI

    course = make_tiny_course(tmp_path / "course")
    folder = submit(course, "alice", ANSWERS["right"])
    (folder / "timestamp.txt").write_text("2026-01-02 03:04:05.678901 UTC")
    autograde(course, ["hw"], workers=1, sandboxed=False, progress=False)
    api = NbGraderAPI(coursedir=course.coursedir, config=course.config)
    assert api.get_autograded_students("hw") == {"alice"}
