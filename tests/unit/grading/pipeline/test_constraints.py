"""course_utils.grading.pipeline.constraints and its place in scoring: the trusted half of a stated constraint.

The grader re-checks the submitted notebook's cells (which the kernel cannot change), driven by the solution's
constraint records; a violation scores 0 for that task only, with a message naming the operation.
"""
from __future__ import annotations

import nbformat
import torch

from course_utils.grading.cells import GradedCell
from course_utils.grading.pipeline.constraints import (
    constrained_tasks,
    constraint_problems,
    shipped_modules,
)
from course_utils.grading.pipeline.scoring import score_notebook
from course_utils.grading.pipeline.verdicts import compare_records

PARAMS = {"function": "product", "rules": ["matmul"], "uses": [], "require": [], "visible": True}
REFERENCE = {"ex_p/constraint": {"kind": "constraint", "value": [], "params": PARAMS},
             "ex_p/value": {"kind": "tensor", "value": torch.ones(2), "params": {}},
             "ex_q/value": {"kind": "value", "value": 3, "params": {}}}
CELLS = [GradedCell("ex_p", 3.0, True, "ex_p_answer"), GradedCell("ex_q", 1.0, True, "ex_q_answer")]
CLEAN = "def product(A, B):\n    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(1)\n"


def notebook(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# prose")]
                                    + [nbformat.v4.new_code_cell(s) for s in sources])


def records(constraint_value=()):
    return {"ex_p/constraint": {"kind": "constraint", "value": list(constraint_value), "params": {}},
            "ex_p/value": {"kind": "tensor", "value": torch.ones(2), "params": {}},
            "ex_q/value": {"kind": "value", "value": 3, "params": {}}}


def scores(nb, student=None, **kw):
    json_text = nbformat.writes(nb) if nb is not None else None
    return {s.grade_id: (s.score, s.message)
            for s in score_notebook(CELLS, student or records(), REFERENCE, notebook=json_text, **kw)}


def test_constrained_tasks_come_from_the_reference():
    assert constrained_tasks(REFERENCE) == {"ex_p": PARAMS}
    assert constraint_problems(notebook("x = 1"), {"ex_q/value": REFERENCE["ex_q/value"]}) == {}


def test_a_clean_notebook_scores_full_points():
    got = scores(notebook("import torch", CLEAN))
    assert got == {"ex_p": (3.0, "all 2 tests passed"), "ex_q": (1.0, "all 1 tests passed")}


def test_a_violation_scores_zero_for_its_task_only_and_names_the_operation():
    got = scores(notebook("import torch", "def product(A, B):\n    return A @ B\n"))
    assert got["ex_p"] == (0.0, "constraint check failed: `product` uses `@` (matrix multiplication), which this task "
                                "forbids (a built-in matrix product)")
    assert got["ex_q"][0] == 1.0


def test_a_patched_kernel_check_earns_nothing():
    """The kernel recorded a clean outcome and the right values; the cells still give the product away."""
    patch = ("import course_utils.constraints as c\nfrom course_utils.checks import record\n"
             "c.constrained = lambda fn, *rules, key=None, **kw: (record(key, [], kind='constraint'), fn)[1]")
    got = scores(notebook("import torch", patch, "def product(A, B):\n    return torch.mm(A, B)\n"))
    assert got["ex_p"][0] == 0.0
    assert "`torch.mm`" in got["ex_p"][1] and "assigns to `c.constrained`" in got["ex_p"][1]


def test_what_the_kernel_saw_fails_the_task_too():
    got = scores(notebook("import torch", CLEAN), records(["`product` called `torch.mm`, which this task forbids"]))
    assert got["ex_p"][0] == 0.0 and "called `torch.mm`" in got["ex_p"][1]
    verdict = compare_records(records(["`product` called `torch.mm`"]), REFERENCE)["ex_p"]
    assert not verdict.passed and "visible check 'constraint' failed: `product` called `torch.mm`" in verdict.message


def test_without_the_notebook_a_constrained_task_fails_closed():
    got = scores(None)
    assert got["ex_p"] == (0.0, "constraint check failed: the submitted code could not be read for the constraint check")
    assert got["ex_q"][0] == 1.0


def test_a_shipped_module_may_not_be_imported():
    assert shipped_modules(["helper.py", "pkg/__init__.py", "data.csv", "notes.txt"]) == {"helper", "pkg"}
    got = scores(notebook("import torch\nimport tqdm", CLEAN), shipped={"tqdm"})
    assert got["ex_p"][0] == 0.0 and "ships as its own file" in got["ex_p"][1]


def test_a_broken_reference_parameter_fails_closed_instead_of_crashing():
    reference = {"ex_p/constraint": {"kind": "constraint", "value": [], "params": {"function": "product",
                                                                                   "rules": ["no_such_rule"]}}}
    problems = constraint_problems(notebook("import torch", CLEAN), reference)
    assert problems == {"ex_p": "the constraint check could not run (KeyError)"}
