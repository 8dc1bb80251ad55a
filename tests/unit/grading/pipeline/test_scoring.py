"""course_utils.grading.pipeline.scoring: verdicts become points per graded cell, with the reason in the message."""

from __future__ import annotations

import torch

from course_utils.grading.cells import GradedCell
from course_utils.grading.pipeline.scoring import score_notebook

CELLS = [
    GradedCell("ex_a", 2.0, True, "ex_a_answer"),
    GradedCell("ex_b", 1.0, True, "ex_b_answer"),
    GradedCell("essay", 5.0, False, "essay"),
]
REFERENCE = {
    "ex_a/x": {"kind": "tensor", "value": torch.ones(2), "params": {}},
    "ex_b/y": {"kind": "value", "value": 3, "params": {}},
}


def scores(records, **kw):
    return {s.grade_id: (s.score, s.max_score, s.message) for s in score_notebook(CELLS, records, REFERENCE, **kw)}


def test_full_points_only_when_the_trusted_comparison_passes():
    got = scores(
        {
            "ex_a/x": {"kind": "tensor", "value": torch.ones(2), "params": {}},
            "ex_b/y": {"kind": "value", "value": 4, "params": {}},
        }
    )
    assert got["ex_a"] == (2.0, 2.0, "all 1 tests passed")
    assert got["ex_b"][:2] == (0.0, 1.0) and "the result is 4, which is not the expected value" in got["ex_b"][2]


def test_manually_graded_cells_are_left_to_a_human():
    assert scores({})["essay"] == (None, 5.0, "graded by hand")


def test_a_notebook_that_could_not_run_scores_zero_with_the_problem():
    got = scores({}, problem="hw.ipynb is not a valid notebook")
    assert got["ex_a"] == (0.0, 2.0, "hw.ipynb is not a valid notebook")


def test_a_limit_is_named_on_every_failed_cell():
    got = scores(
        {"ex_a/x": {"kind": "tensor", "value": torch.ones(2), "params": {}}},
        limits_hit=["cell time limit (5 s) in cell 3"],
    )
    assert got["ex_a"][0] == 2.0 and "stopped early" not in got["ex_a"][2]
    assert got["ex_b"][0] == 0.0 and "(the run was stopped early: cell time limit (5 s) in cell 3)" in got["ex_b"][2]


def test_a_graded_cell_the_reference_never_recorded_asks_for_the_instructor():
    cells = [GradedCell("ex_c", 1.0, True, None)]
    (score,) = score_notebook(cells, {}, REFERENCE)
    assert score.score == 0.0 and "ask the instructor" in score.message
