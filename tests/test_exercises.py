"""Spec for the graded exercises: solutions/ (instructor source) and exercises/ (the nbgrader release).

- the release is what nbgrader generates from solutions/ today (never stale, never hand-edited);
- every exercise notebook has at least 4 graded tasks (30 in all), each with a prompt, a solution cell and a
  locked test cell holding visible checks (with keys) and hidden record(...) calls, and nothing else hidden;
- executed, the solutions pass every test cell and record every graded task; the untouched release fails
  every graded test cell with CheckFailure or NotImplementedError (and the kernel survives); a typical wrong
  answer scores partially in the trusted comparison.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.grading.cells import grade_id, nbgrader_meta
from course_utils.grading.course import Course
from course_utils.grading.release import release
from course_utils.grading.verdicts import compare_records, load_records

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = [
    "01_tensors_vs_numpy", "02_matrix_operations", "03_autograd", "04_optimizers",
    "05_neural_networks", "06_sigmoid_network_from_scratch", "07_apparel_classifier",
]
KEY = re.compile(r"""["'](ex\d\d_\w+)/""")
COURSE = Course.load(REPO)
MARKERS = COURSE.markers


def notebook_path(folder: str, assignment: str) -> Path:
    return REPO / folder / assignment / f"{assignment}_exercises.ipynb"


def read(folder: str, assignment: str):
    return nbformat.read(notebook_path(folder, assignment), as_version=4)


def grade_cells(nb) -> list:
    """The notebook cells that nbgrader grades (test cells and manually graded answers)."""
    return [c for c in nb.cells if nbgrader_meta(c).get("grade")]


def execute(nb, cwd: Path, record_file: Path | None = None):
    """Run a notebook top to bottom with nbclient (errors kept in the outputs); returns it."""
    env = {k: v for k, v in os.environ.items() if k != "COURSE_RECORD_FILE"}
    if record_file is not None:
        env["COURSE_RECORD_FILE"] = str(record_file)
    client = NotebookClient(nb, kernel_name="python3", timeout=600, allow_errors=True,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return nb


def errors(cell) -> list[str]:
    return [o.ename for o in cell.get("outputs", []) if o.output_type == "error"]


# ---------------------------------------------------------------- structure (fast, static)


def test_every_lesson_has_a_solution_and_a_release():
    for assignment in ASSIGNMENTS:
        assert notebook_path("solutions", assignment).is_file(), f"solutions/{assignment} is missing"
        assert notebook_path("exercises", assignment).is_file(), (
            f"exercises/{assignment} is missing: run `make release`")


def test_at_least_four_tasks_per_notebook_and_thirty_in_all():
    counts = {a: len(grade_cells(read("solutions", a))) for a in ASSIGNMENTS}
    assert all(n >= 4 for n in counts.values()), counts
    assert sum(counts.values()) >= 30, counts


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_each_task_is_prompt_solution_locked_test(assignment):
    nb = read("solutions", assignment)
    ids = [grade_id(c) for c in nb.cells]
    assert len(ids) == len(set(ids)), "grade ids must be unique"
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if not meta.get("grade"):
            continue
        gid, prompt, answer = meta["grade_id"], nb.cells[i - 2], nb.cells[i - 1]
        assert re.fullmatch(rf"ex{assignment[:2]}_[a-z0-9_]+", gid), gid
        assert meta["locked"] and meta["points"] > 0 and not meta["solution"], gid
        assert prompt.cell_type == "markdown" and nbgrader_meta(prompt).get("locked"), f"{gid}: prompt first"
        assert nbgrader_meta(answer).get("solution") and "### BEGIN SOLUTION" in answer.source, f"{gid}: solution cell"
        assert "from course_utils.checks import" in cell.source, gid


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_test_cells_teach_visibly_and_guard_with_records_only(assignment):
    for cell in grade_cells(read("solutions", assignment)):
        gid, (visible, hidden) = grade_id(cell), MARKERS.split(cell.source)
        assert re.search(r"\bcheck_\w+\(", visible), f"{gid}: no visible check"
        assert "record(" in hidden, f"{gid}: no hidden record(...)"
        assert not re.search(r"\bcheck_\w+\(|CheckFailure|assert ", hidden), (
            f"{gid}: hidden tests must only record, never judge or hold expected values")
        assert set(KEY.findall(cell.source)) == {gid}, f"{gid}: every key must start with '{gid}/'"


@pytest.mark.slow
def test_release_is_not_stale(tmp_path):
    """Regenerate the release with nbgrader into a temp dir: sources and metadata must equal exercises/."""
    out = tmp_path / "release"
    release(COURSE, into=out)
    for assignment in ASSIGNMENTS:
        fresh = json.loads((out / assignment / f"{assignment}_exercises.ipynb").read_text())
        committed = json.loads(notebook_path("exercises", assignment).read_text())
        strip = lambda nb: [(c["cell_type"], "".join(c["source"]), c["metadata"]) for c in nb["cells"]]  # noqa: E731
        assert strip(committed) == strip(fresh), (
            f"exercises/{assignment} is stale: run `make release ASSIGNMENT={assignment}`")
        assert committed["metadata"].get("kernelspec") == fresh["metadata"].get("kernelspec")


def test_release_hides_solutions_and_hidden_tests():
    for assignment in ASSIGNMENTS:
        text = notebook_path("exercises", assignment).read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text and "record(" not in text


# ---------------------------------------------------------------- behaviour (executes notebooks)


@pytest.fixture(scope="session")
def solution_runs(tmp_path_factory):
    """Each solution notebook executed once, with its records (the trusted reference)."""
    runs = {}
    for assignment in ASSIGNMENTS:
        records = tmp_path_factory.mktemp(assignment) / "reference.pt"
        nb = execute(read("solutions", assignment), notebook_path("solutions", assignment).parent, records)
        runs[assignment] = (nb, load_records(records))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solutions_pass_every_test_cell(solution_runs, assignment):
    nb, records = solution_runs[assignment]
    failing = {grade_id(c) or f"cell {i}": errors(c) for i, c in enumerate(nb.cells) if errors(c)}
    assert not failing, failing
    # nbgrader gives 0 points to a test cell that writes to stderr (a warning, say): solutions must not.
    noisy = [grade_id(c) for c in grade_cells(nb)
             if any(o.output_type == "stream" and o.name == "stderr" for o in c.outputs)]
    assert not noisy, f"test cells writing to stderr (nbgrader scores them 0): {noisy}"
    graded = {grade_id(c) for c in grade_cells(nb)}
    recorded = {key.split("/")[0] for key in records}
    assert recorded == graded, f"graded cells that record nothing: {graded - recorded}"
    assert all(v.passed for v in compare_records(records, records).values())


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_untouched_release_fails_every_graded_cell_and_scores_zero(solution_runs, tmp_path, assignment):
    records = tmp_path / "student.pt"
    nb = execute(read("exercises", assignment), notebook_path("exercises", assignment).parent, records)
    for cell in nb.cells:
        gid = grade_id(cell)
        if nbgrader_meta(cell).get("grade"):
            assert errors(cell) and set(errors(cell)) <= {"CheckFailure", "NotImplementedError"}, (gid, errors(cell))
        else:
            assert not errors(cell), f"{gid} errors in the untouched release: {errors(cell)}"
    student = load_records(records) if records.exists() else {}
    verdicts = compare_records(student, solution_runs[assignment][1])
    assert not any(v.passed for v in verdicts.values())


def replace_answer(nb, task: str, source: str):
    cell = next(c for c in nb.cells if grade_id(c) == f"{task}_answer")
    cell.source = source
    return nb


TYPICAL_MISTAKES = {
    # passes the visible test, but ignores dtype: the hidden int64 / float64 tests catch it
    "01_tensors_vs_numpy": {
        "ex01_arange_matrix": "def arange_matrix(rows, cols, dtype=torch.float32):\n"
                              "    return torch.arange(rows * cols).reshape(rows, cols).float()",
        "ex01_pairwise_differences": "def pairwise_differences(x):\n    raise NotImplementedError()",
    },
    # the textbook formula overflows in float32: visible (float64) passes, hidden extremes give nan
    "03_autograd": {
        "ex03_softplus_gradient": "def softplus_sum_grad(x):\n    return torch.exp(x) / (1 + torch.exp(x))",
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("assignment", sorted(TYPICAL_MISTAKES))
def test_typical_wrong_answers_score_partially(solution_runs, tmp_path, assignment):
    nb = read("solutions", assignment)
    for task, source in TYPICAL_MISTAKES[assignment].items():
        replace_answer(nb, task, source)
    records = tmp_path / "student.pt"
    execute(nb, notebook_path("solutions", assignment).parent, records)
    verdicts = compare_records(load_records(records), solution_runs[assignment][1])
    failed = {gid for gid, v in verdicts.items() if not v.passed}
    assert failed == set(TYPICAL_MISTAKES[assignment])
    points = {grade_id(c): nbgrader_meta(c)["points"] for c in grade_cells(nb)}
    score = sum(points[g] for g, v in verdicts.items() if v.passed)
    assert 0 < score < sum(points.values())
    for task in failed:
        assert "hidden test" in verdicts[task].message or "not recorded" in verdicts[task].message


def test_the_graders_apparel_architecture_is_the_one_solution_07_builds():
    """The grader rebuilds exercise 07's network from recorded weights: it must be the solution's network."""
    import torch
    from torch import nn

    from course_utils.grading.classifier import ARCHITECTURES

    answer = next(c.source for c in read("solutions", "07_apparel_classifier").cells
                  if grade_id(c) == "ex07_build_classifier_answer")
    namespace = {"torch": torch, "nn": nn}
    exec(answer, namespace)
    built, graders = namespace["build_classifier"](), ARCHITECTURES["apparel_mlp"]()
    assert [type(m) for m in built.modules()] == [type(m) for m in graders.modules()]
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in graders.state_dict().items()}
