"""Every graded exercise, end to end through the real pipeline (sandbox included): the solution earns every
point of every task and the untouched release earns 0 without crashing the grader.

One autograde call grades all 14 notebooks (7 exercises x {solved, untouched}) with 2 workers, so the
reference runs and the submissions share one pool. Exercise 07's training task is judged on the trusted
side: the recorded weights are loaded into ``checks.build_apparel_classifier`` and scored on the test set.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils.grading.cells import graded_cells
from course_utils.grading.course import Course
from course_utils.grading.results import load_result
from course_utils.grading.samples import solved

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (REPO / "solutions").iterdir() if any(p.glob("*.ipynb")))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)")]


def _points(source: Path) -> dict[str, float]:
    """grade_id -> points of every autograded test cell of a source notebook."""
    return {c.grade_id: c.points for c in graded_cells(source) if c.autograded}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", course)
    shutil.copytree(REPO / "solutions", course / "solutions")
    released = subprocess.run([sys.executable, "-m", "course_utils.grading", "--course", str(course), "release"],
                              capture_output=True, text=True, timeout=600)
    assert released.returncode == 0, released.stderr[-3000:]
    for assignment in ASSIGNMENTS:
        for source in (course / "solutions" / assignment).glob("*.ipynb"):
            release_nb = nbformat.read(course / "exercises" / assignment / source.name, as_version=4)
            for student, nb in (("solved", solved(release_nb, nbformat.read(source, as_version=4))),
                                ("untouched", release_nb)):
                folder = course / "grading" / "submitted" / student / assignment
                folder.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, folder / source.name)
    done = subprocess.run([sys.executable, "-m", "course_utils.grading", "--course", str(course), "autograde",
                           "--workers", "2"], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Course.load(course), done.stdout


def test_all_seven_exercises_are_graded_in_one_call(graded):
    _, summary = graded
    assert len(ASSIGNMENTS) == 7
    assert all(f"{a}: graded 2, unchanged 0" in summary for a in ASSIGNMENTS), summary


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_solution_earns_every_point_of_every_task(graded, assignment):
    course, summary = graded
    result = load_result(course, assignment, "solved")
    for source in (course.source_dir / assignment).glob("*.ipynb"):
        entry = result["notebooks"][source.stem]
        assert entry["problem"] is None and entry["limits_hit"] == [], entry
        got = {c["grade_id"]: c["score"] for c in entry["cells"]}
        assert got == _points(source), [c["message"] for c in entry["cells"] if c["score"] != c["max_score"]]
        assert all(c["message"].startswith("all ") for c in entry["cells"])


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_untouched_release_earns_nothing_and_says_why(graded, assignment):
    course, _ = graded
    result = load_result(course, assignment, "untouched")
    for source in (course.source_dir / assignment).glob("*.ipynb"):
        entry = result["notebooks"][source.stem]
        assert entry["problem"] is None and entry["limits_hit"] == [], entry  # graded, not crashed
        assert {c["grade_id"]: c["score"] for c in entry["cells"]} == {g: 0.0 for g in _points(source)}
        assert all("not recorded" in c["message"] for c in entry["cells"]), entry["cells"]


def test_the_classifier_is_judged_by_the_grader_not_the_kernel(graded):
    """07's reference holds trained weights (kind 'classifier'), which the trusted side re-evaluates."""
    course, _ = graded
    reference = torch.load(course.references_dir / "07_apparel_classifier"
                           / "07_apparel_classifier_exercises.pt", weights_only=True)
    classifier = {k: v for k, v in reference.items() if v["kind"] == "classifier"}
    assert list(classifier) == ["ex07_train_classifier/trained_weights"]
    assert set(classifier["ex07_train_classifier/trained_weights"]["value"]) == {"1.weight", "1.bias", "3.weight",
                                                                                "3.bias"}
    cells = load_result(course, "07_apparel_classifier", "solved")["notebooks"]["07_apparel_classifier_exercises"]
    assert next(c for c in cells["cells"] if c["grade_id"] == "ex07_train_classifier")["score"] == 4.0
