"""Every graded exercise, end to end through the real pipeline (sandbox included): the solution earns every
point of every task, the untouched release earns 0 without crashing the grader (each task saying it is not
written yet, as the test cell says it), and every constraint violation earns 0 for its task alone, with a message
naming the forbidden operation.

One autograde call grades every notebook (9 exercises x {solved, untouched}, plus one submission per
constrained task that breaks its constraint) with 2 workers, so the reference runs and the submissions share
one pool (the batteries of ways around a constraint and of scratch cells are in ``test_predictable_grades``).
The training tasks of 07 and 08 are judged
on the trusted side: the grader rebuilds the designed network from its recorded layer list, checks the spec,
loads the recorded weights and scores them on the test set.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils.grading.authoring.samples import VIOLATIONS, solved, violating
from course_utils.grading.cells import graded_cells
from course_utils.grading.course import Course
from course_utils.grading.pipeline.references import reference_key
from course_utils.grading.pipeline.results import load_result
from support import REPO

ASSIGNMENTS = sorted(p.name for p in (REPO / "solutions").iterdir() if any(p.glob("*.ipynb")))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)"),
]


#: words the message of a broken constraint contains, per rule (it names the forbidden operation)
NAMED = {
    "matmul": ["`@`", "matmul", "`torch.mm`"],
    "autograd": ["autograd"],
    "sigmoid": ["sigmoid"],
    "loss_functions": ["loss function"],
    "convolution": ["convolution"],
    "self_contained": ["imports", "outside the cell", "does not define"],
}


def _assignment_of(task: str) -> str:
    return next(a for a in ASSIGNMENTS if a.startswith(task[2:4]))


def _points(source: Path) -> dict[str, float]:
    """grade_id -> points of every autograded test cell of a source notebook."""
    return {c.grade_id: c.points for c in graded_cells(source) if c.autograded}


def _seed_references(course: Path, solution_runs) -> None:
    """The grader's cached references, from the run of each solution this test session already made."""
    loaded = Course.load(course)
    for assignment in ASSIGNMENTS:
        folder = loaded.references_dir / assignment
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(solution_runs[assignment].record_file, folder / f"{assignment}_exercises.pt")
        (folder / f"{assignment}_exercises.key").write_text(reference_key(loaded, assignment))


@pytest.fixture(scope="module")
def graded(tmp_path_factory, solution_runs):
    course = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", course)
    shutil.copytree(REPO / "solutions", course / "solutions")
    released = subprocess.run(
        [sys.executable, "-m", "course_utils.grading", "--course", str(course), "release"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert released.returncode == 0, released.stderr[-3000:]
    _seed_references(course, solution_runs)
    for assignment in ASSIGNMENTS:
        for source in (course / "solutions" / assignment).glob("*.ipynb"):
            release_nb = nbformat.read(course / "exercises" / assignment / source.name, as_version=4)
            solution_nb = nbformat.read(source, as_version=4)
            students = [("solved", solved(release_nb, solution_nb)), ("untouched", release_nb)]
            students += [
                (f"violates-{task}", violating(release_nb, solution_nb, task))
                for task in VIOLATIONS
                if _assignment_of(task) == assignment
            ]
            for student, nb in students:
                folder = course / "grading" / "submitted" / student / assignment
                folder.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, folder / source.name)
    done = subprocess.run(
        [sys.executable, "-m", "course_utils.grading", "--course", str(course), "autograde", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Course.load(course), done.stdout


def test_all_nine_exercises_are_graded_in_one_call(graded):
    _, summary = graded
    assert len(ASSIGNMENTS) == 9
    for assignment in ASSIGNMENTS:
        extra = sum(_assignment_of(t) == assignment for t in VIOLATIONS)
        assert f"{assignment}: graded {2 + extra}, unchanged 0" in summary, summary


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
        assert all(
            " is not written yet: replace `raise NotImplementedError()`" in c["message"] for c in entry["cells"]
        ), entry["cells"]


def _reference(course, assignment: str) -> dict:
    return torch.load(course.references_dir / assignment / f"{assignment}_exercises.pt", weights_only=True)


@pytest.mark.parametrize("student", [f"violates-{t}" for t in sorted(VIOLATIONS)])
def test_a_broken_constraint_scores_zero_for_its_task_only(graded, student):
    """No task hangs on another: a task that may call an earlier task's function runs with the course's version."""
    course, _ = graded
    task = student.split("-", 1)[1]
    assignment = _assignment_of(task)
    constraints = {k: v["params"] for k, v in _reference(course, assignment).items() if v["kind"] == "constraint"}
    entry = load_result(course, assignment, student)["notebooks"][f"{assignment}_exercises"]
    assert entry["problem"] is None and entry["limits_hit"] == [], entry
    cells = {c["grade_id"]: c for c in entry["cells"]}
    assert cells[task]["score"] == 0.0, cells[task]
    rules = {rule for k, p in constraints.items() if k.startswith(task + "/") for rule in p["rules"]}
    assert any(word in cells[task]["message"] for rule in rules for word in NAMED[rule]), cells[task]["message"]
    for gid, cell in cells.items():  # every other task keeps its points
        if gid != task:
            assert cell["score"] == cell["max_score"], (gid, cell["message"])


def test_the_designed_networks_are_judged_by_the_grader_not_the_kernel(graded):
    """07's and 08's references hold the layer lists and trained weights (kind 'classifier'), re-evaluated by the
    grader after rebuilding the network from the list."""
    course, _ = graded
    for assignment, key, points in [
        ("07_apparel_classifier", "ex07_train_classifier/trained_network", 4.0),
        ("08_convolutional_network", "ex08_train_cnn/trained_network", 4.0),
    ]:
        reference = _reference(course, assignment)
        entry = reference[key]
        assert entry["kind"] == "classifier" and entry["params"]["architecture"] == "sequential"
        assert set(entry["value"]) == {"layers", "state_dict"} and entry["params"]["min_accuracy"] == 0.8
        task = key.split("/")[0]
        cells = load_result(course, assignment, "solved")["notebooks"][f"{assignment}_exercises"]["cells"]
        assert next(c for c in cells if c["grade_id"] == task)["score"] == points
