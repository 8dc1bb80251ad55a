"""Spec for the graded exercises: solutions/ (instructor source) and exercises/ (the nbgrader release).

- one exercise per lesson (01..09); the release is what nbgrader generates from solutions/ today (never
  stale, never hand-edited);
- every exercise notebook has at least 4 graded tasks (45 in all), each with a prompt, a solution cell and a
  locked test cell holding visible checks (with keys) and hidden record(...) calls, and nothing else hidden;
- no task can be passed by copying: the normalised code of no solution appears in a lesson or in the task's
  prompt (``grading.copying``), and the statements that do overlap weigh little;
- every stated constraint is checked (``constrained(...)`` in the test cell): the solution's answer cell passes
  the grader's static check, a violating answer cell fails it with a message naming the forbidden operation, and
  so does every bypass of ``samples.BYPASSES`` that the answer cell's text gives away;
- executed, the solutions pass every test cell and record every graded task; the untouched release fails
  every graded test cell with CheckFailure or NotImplementedError (and the kernel survives); a typical wrong
  answer scores partially in the trusted comparison.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from course_utils.grading.authoring.copying import copied_share, copy_report
from course_utils.grading.authoring.samples import (
    ACCEPTED,
    BYPASSES,
    RUN_TIME_ONLY,
    VIOLATIONS,
    solved,
    violating,
)
from course_utils.grading.cells import grade_id, nbgrader_meta
from course_utils.grading.course import Course
from course_utils.grading.pipeline.constraints import constraint_problems
from course_utils.grading.pipeline.release import release
from course_utils.grading.pipeline.verdicts import compare_records
from course_utils.records import load_records
from support import REPO, execute

REPO = REPO
ASSIGNMENTS = [
    "01_tensors_vs_numpy",
    "02_matrix_operations",
    "03_autograd",
    "04_optimizers",
    "05_neural_networks",
    "06_sigmoid_network_from_scratch",
    "07_apparel_classifier",
    "08_convolutional_network",
    "09_beyond_the_basics",
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


def errors(cell) -> list[str]:
    return [o.ename for o in cell.get("outputs", []) if o.output_type == "error"]


# ---------------------------------------------------------------- structure (fast, static)


def test_every_lesson_has_a_solution_and_a_release():
    lessons = sorted(p.stem[:2] for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert set(lessons) <= {a[:2] for a in ASSIGNMENTS}, f"a lesson without an exercise: {lessons}"
    assert sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir()) == ASSIGNMENTS
    for assignment in ASSIGNMENTS:
        assert notebook_path("solutions", assignment).is_file(), f"solutions/{assignment} is missing"
        assert notebook_path("exercises", assignment).is_file(), (
            f"exercises/{assignment} is missing: run `make release`"
        )


def test_at_least_four_tasks_per_notebook_and_forty_five_in_all():
    counts = {a: len(grade_cells(read("solutions", a))) for a in ASSIGNMENTS}
    assert len(counts) >= 9 and all(n >= 4 for n in counts.values()), counts
    assert sum(counts.values()) >= 45, counts


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
        assert re.search(r"\bcheck_\w+\(|raise CheckFailure\(", visible), f"{gid}: no visible check"
        assert "record(" in hidden, f"{gid}: no hidden record(...)"
        assert not re.search(r"\bcheck_\w+\(|CheckFailure|assert ", hidden), (
            f"{gid}: hidden tests must only record, never judge or hold expected values"
        )
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
            f"exercises/{assignment} is stale: run `make release ASSIGNMENT={assignment}`"
        )
        assert committed["metadata"].get("kernelspec") == fresh["metadata"].get("kernelspec")


def test_release_hides_solutions_and_hidden_tests():
    for assignment in ASSIGNMENTS:
        text = notebook_path("exercises", assignment).read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text and "record(" not in text


def test_each_notebook_ends_with_a_recap_and_what_comes_next():
    for assignment in ASSIGNMENTS:
        last = read("solutions", assignment).cells[-1]
        assert last.cell_type == "markdown" and last.source.startswith("## Recap and what comes next"), assignment


# ---------------------------------------------------------------- no task passable by copying (fast, static)

#: the share of all points that statements found in the lessons or prompts may weigh (measured: 16%)
MAX_OVERLAP = 0.20


@pytest.fixture(scope="module")
def copies():
    return copy_report(COURSE)


def test_no_solution_appears_in_a_lesson_or_in_its_prompt(copies):
    """The normalised code of a whole solution (comments, names, layout ignored) must not be found anywhere."""
    passable = {t.task: t.copied for t in copies if t.passable}
    assert not passable, f"solutions that a lesson or the prompt gives away, statement by statement: {passable}"
    assert len(copies) == sum(len(grade_cells(read("solutions", a))) for a in ASSIGNMENTS)


def test_statements_shared_with_the_lessons_weigh_little(copies):
    passable_share, overlap = copied_share(copies)
    report = "\n".join(f"{t.task}: {t.found}/{t.total} {t.copied}" for t in copies if t.found)
    assert passable_share == 0.0 and overlap <= MAX_OVERLAP, f"overlap {overlap:.1%}:\n{report}"


def test_the_copy_guard_catches_a_copied_solution():
    from course_utils.grading.authoring.copying import (
        Corpus,
        leaf_statements,
        solution_code,
    )

    lessons = Corpus.of(["def sigmoid(z):\n    # the lesson's\n    return 1 / (1 + torch.exp(-z))\n"])
    answer = (
        "def sigmoid(x):\n    ### BEGIN SOLUTION\n    return 1 / (1 + torch.exp(-x))  # renamed\n    ### END SOLUTION\n"
    )
    statements = leaf_statements(ast.parse(solution_code(answer)))
    assert statements and all(lessons.contains(s) for s in statements)
    other = (
        "def sigmoid(x):\n    ### BEGIN SOLUTION\n"
        "    return torch.exp(-torch.logaddexp(torch.zeros_like(x), -x))\n    ### END SOLUTION\n"
    )
    assert not any(lessons.contains(s) for s in leaf_statements(ast.parse(solution_code(other))))


# ---------------------------------------------------------------- stated constraints (fast, static)


def constraint_references(nb) -> dict:
    """What the solution run records for each constrained(...) call of a notebook, read from the test cells."""
    found = {}
    for cell in grade_cells(nb):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "constrained":
                kw = {k.arg: k.value for k in node.keywords}
                found[kw["key"].value] = {
                    "kind": "constraint",
                    "value": [],
                    "params": {
                        "function": node.args[0].id,
                        "rules": [a.value for a in node.args[1:]],
                        "uses": sorted(k.value for k in kw["uses"].keys) if "uses" in kw else [],
                        "require": [e.value for e in kw["require"].elts] if "require" in kw else [],
                        "visible": True,
                    },
                }
    return found


CONSTRAINED = {a: constraint_references(read("solutions", a)) for a in ASSIGNMENTS}
#: words a violation message must contain, per rule (it names the forbidden operation)
NAMED = {
    "matmul": ["`@`"],
    "autograd": ["autograd"],
    "sigmoid": ["sigmoid"],
    "loss_functions": ["loss function"],
    "convolution": ["convolution"],
    "self_contained": ["imports", "outside the cell", "does not define"],
}


def test_every_violation_sample_belongs_to_a_constrained_task():
    tasks = {key.split("/")[0] for refs in CONSTRAINED.values() for key in refs}
    assert tasks == set(VIOLATIONS), "samples.VIOLATIONS needs one violating answer per constrained task"
    assert len(tasks) >= 10


@pytest.mark.parametrize("assignment", [a for a in ASSIGNMENTS if CONSTRAINED[a]])
def test_solutions_pass_the_graders_constraint_check(assignment):
    source, released = read("solutions", assignment), read("exercises", assignment)
    assert constraint_problems(solved(released, source), CONSTRAINED[assignment]) == {}


@pytest.mark.parametrize("task", sorted(VIOLATIONS))
def test_a_violation_fails_its_task_with_a_message_naming_the_operation(task):
    assignment = next(a for a in ASSIGNMENTS if a.startswith(task[2:4]))
    references = CONSTRAINED[assignment]
    problems = constraint_problems(
        violating(read("exercises", assignment), read("solutions", assignment), task), references
    )
    assert task in problems, f"{task}: the violating answer passed the constraint check"
    rules = next(r["params"]["rules"] for k, r in references.items() if k.startswith(task + "/"))
    assert any(word in problems[task] for rule in rules for word in NAMED[rule]), problems[task]


@pytest.mark.parametrize("bypass", sorted(BYPASSES))
def test_ways_around_a_constraint_fail_the_graders_static_check(bypass):
    task, kwargs = BYPASSES[bypass]
    assignment = next(a for a in ASSIGNMENTS if a.startswith(task[2:4]))
    problems = constraint_problems(
        violating(read("exercises", assignment), read("solutions", assignment), task, **kwargs), CONSTRAINED[assignment]
    )
    assert set(problems) == (set() if bypass in RUN_TIME_ONLY else {task}), problems


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_legitimate_answers_pass_the_graders_static_check(name):
    task, kwargs = ACCEPTED[name]
    assignment = next(a for a in ASSIGNMENTS if a.startswith(task[2:4]))
    assert (
        constraint_problems(
            violating(read("exercises", assignment), read("solutions", assignment), task, **kwargs),
            CONSTRAINED[assignment],
        )
        == {}
    )


# ---------------------------------------------------------------- behaviour (executes notebooks)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solutions_pass_every_test_cell(solution_runs, assignment):
    nb, records = solution_runs[assignment].notebook, solution_runs[assignment].records
    failing = {grade_id(c) or f"cell {i}": errors(c) for i, c in enumerate(nb.cells) if errors(c)}
    assert not failing, failing
    # nbgrader gives 0 points to a test cell that writes to stderr (a warning, say): solutions must not.
    noisy = [
        grade_id(c) for c in grade_cells(nb) if any(o.output_type == "stream" and o.name == "stderr" for o in c.outputs)
    ]
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
    verdicts = compare_records(student, solution_runs[assignment].records)
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
        "ex01_tile_images": "def tile_images(images, ncols):\n    raise NotImplementedError()",
    },
    # a zero row divides by zero: the visible rows are fine, the hidden zero row gives nan
    "02_matrix_operations": {
        "ex02_cosine_similarity": "def cosine_similarity_matrix(X, Y):\n"
        "    X = X / torch.linalg.norm(X, dim=1, keepdim=True)\n"
        "    Y = Y / torch.linalg.norm(Y, dim=1, keepdim=True)\n"
        "    return X @ Y.T",
    },
    # the textbook formula overflows in float32: visible (float64) passes, hidden extremes give nan
    "03_autograd": {
        "ex03_logaddexp_gradient": "def logaddexp_grads(x, y):\n"
        "    total = torch.exp(x) + torch.exp(y)\n"
        "    return torch.exp(x) / total, torch.exp(y) / total",
    },
    # equal batches hide the weighting: the visible test passes, the hidden uneven batches do not
    "03_autograd_batches": {
        "ex03_mean_loss_gradient": "def mean_loss_gradient(loss_fn, w, batches):\n"
        "    leaf = w.detach().clone().requires_grad_(True)\n"
        "    for x, y in batches:\n"
        "        (loss_fn(leaf, x, y) / len(batches)).backward()\n"
        "    return leaf.grad",
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(TYPICAL_MISTAKES))
def test_typical_wrong_answers_score_partially(solution_runs, tmp_path, case):
    assignment = next(a for a in ASSIGNMENTS if case.startswith(a))
    nb = read("solutions", assignment)
    for task, source in TYPICAL_MISTAKES[case].items():
        replace_answer(nb, task, source)
    records = tmp_path / "student.pt"
    execute(nb, notebook_path("solutions", assignment).parent, records)
    verdicts = compare_records(load_records(records), solution_runs[assignment].records)
    failed = {gid for gid, v in verdicts.items() if not v.passed}
    assert failed == set(TYPICAL_MISTAKES[case])
    points = {grade_id(c): nbgrader_meta(c)["points"] for c in grade_cells(nb)}
    score = sum(points[g] for g, v in verdicts.items() if v.passed)
    assert 0 < score < sum(points.values())
    for task in failed:
        assert "hidden test" in verdicts[task].message or "not recorded" in verdicts[task].message


@pytest.mark.parametrize(
    "assignment, task, builder, spec",
    [
        (
            "07_apparel_classifier",
            "ex07_build_classifier",
            "build_classifier",
            {"max_params": 110_000, "input_shape": [28, 28]},
        ),
        (
            "08_convolutional_network",
            "ex08_build_cnn",
            "build_cnn",
            {"max_params": 20_000, "input_shape": [1, 28, 28], "required_layers": ["Conv2d"]},
        ),
    ],
)
def test_the_designed_networks_of_the_solutions_meet_their_spec_in_the_grader(assignment, task, builder, spec):
    """The grader rebuilds a designed network from its layer list alone: the solution's must pass the spec."""
    import torch
    from torch import nn

    from course_utils.classifier import designed_network
    from course_utils.networks import describe_sequential

    answer = next(c.source for c in read("solutions", assignment).cells if grade_id(c) == f"{task}_answer")
    namespace = {"torch": torch, "nn": nn}
    exec(answer, namespace)
    built = namespace[builder]()
    model, _, problem = designed_network(describe_sequential(built), {"architecture": "sequential", **spec})
    assert problem is None and [type(m) for m in model] == [type(m) for m in built]
    too_big = describe_sequential(nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.Linear(200, 10)))
    assert "more than the" in designed_network(too_big, {"architecture": "sequential", **spec})[2]


def test_the_sample_class_knows_exercise_01s_tasks_and_points():
    """course_utils.grading.authoring.samples builds the grading tests' and benchmarks' submissions of exercise 01."""
    from course_utils.grading.authoring.samples import POINTS, TASKS
    from course_utils.grading.cells import graded_cells

    cells = graded_cells(notebook_path("solutions", "01_tensors_vs_numpy"))
    assert {c.grade_id: c.points for c in cells if c.autograded} == POINTS
    assert list(POINTS) == TASKS


#: names a test cell may take from another task's answer cell, because its task is about using it
SHARED = {
    "ex05_save_and_load": {"MLP"},  # save and load networks built by Task 1's MLP
    "ex09_resume": {"save_checkpoint"},
}  # resume from what Task 1's save_checkpoint wrote


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_test_cell_runs_on_its_own(assignment):
    """A test cell reads only its own names, the set-up cells', Python's and its own task's answer cell's: no name
    of another test cell, no other task's function (so no task hangs on another), but the SHARED ones."""
    import builtins

    from course_utils.constraint_rules import global_references, module_bindings, python_source

    nb = read("solutions", assignment)
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = set().union(
        *(
            module_bindings(python_source(c.source))
            for c in code
            if not nbgrader_meta(c).get("solution") and not nbgrader_meta(c).get("grade")
        )
    )
    for cell in code:
        task = grade_id(cell)
        if not nbgrader_meta(cell).get("grade") or nbgrader_meta(cell).get("solution"):
            continue
        answer = next(c for c in code if grade_id(c) == f"{task}_answer")
        python = python_source(cell.source)
        foreign = (
            global_references(python)
            - module_bindings(python)
            - setup
            - set(dir(builtins))
            - module_bindings(python_source(answer.source))
            - SHARED.get(task, set())
        )
        assert not foreign, f"{task}'s test cell uses {sorted(foreign)} from elsewhere"
