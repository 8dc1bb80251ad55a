"""course_utils.grading.pipeline.results: the result files, and reading them never loads torch."""

from __future__ import annotations

from course_utils.grading.pipeline.results import (
    load_result,
    result_notes,
    result_path,
    result_totals,
    write_result,
)

RESULT = {
    "student": "alice",
    "assignment": "hw",
    "fingerprint": "f",
    "notebooks": {
        "hw": {
            "seconds": 1.0,
            "limits_hit": ["cell time limit (5 s) in cell 2"],
            "problem": None,
            "cells": [
                {"grade_id": "a", "score": 2.0, "max_score": 2.0, "message": "ok"},
                {"grade_id": "b", "score": None, "max_score": 3.0, "message": "by hand"},
            ],
        }
    },
}


def test_a_result_round_trips_through_its_file_and_nothing_else_is_left(tiny_course):
    assert load_result(tiny_course, "hw", "alice") is None
    path = write_result(tiny_course, RESULT)
    assert path == result_path(tiny_course, "hw", "alice") == tiny_course.results_dir / "hw" / "alice.json"
    assert load_result(tiny_course, "hw", "alice") == RESULT
    assert [p.name for p in path.parent.iterdir()] == ["alice.json"]


def test_totals_count_manual_cells_as_zero_until_graded_and_notes_collect_limits():
    assert result_totals(RESULT) == (2.0, 5.0)
    assert result_notes(RESULT) == ["cell time limit (5 s) in cell 2"]
