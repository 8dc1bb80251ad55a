"""course_utils.grading.pipeline.constraints, tasks and their place in scoring: a constrained task is judged on its
answer cell alone.

The grader checks the submitted answer cell with the rules the test cell applies (driven by the solution's
constraint records) and scores the task from the records of the task's own job (its answer cell run alone with
its test cell); a violation scores 0 for that task only, worded as the test cell words it.
"""

from __future__ import annotations

import nbformat
import torch

from course_utils.constraint_rules import summary
from course_utils.grading.cells import GradedCell
from course_utils.grading.pipeline.constraints import answer_problems, constraint_keys
from course_utils.grading.pipeline.scoring import TaskRun, score_notebook
from course_utils.grading.pipeline.tasks import (
    answer_source,
    constrained_task_ids,
    job_name,
    split_job_name,
    task_notebook,
)
from course_utils.wording import unanswered

PARAMS = {"function": "product", "rules": ["matmul"], "uses": [], "require": [], "visible": True}
TASK_REFERENCE = {
    "ex_p/constraint": {"kind": "constraint", "value": [], "params": PARAMS},
    "ex_p/value": {"kind": "tensor", "value": torch.ones(2), "params": {}},
}
WHOLE_REFERENCE = {**TASK_REFERENCE, "ex_q/value": {"kind": "value", "value": 3, "params": {}}}
CELLS = [GradedCell("ex_p", 3.0, True, "ex_p_answer"), GradedCell("ex_q", 1.0, True, "ex_q_answer")]
CLEAN = "def product(A, B):\n    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(1)\n"


def task_records(constraint_value=(), value=True):
    out = {"ex_p/constraint": {"kind": "constraint", "value": list(constraint_value), "params": {}}}
    if value:
        out["ex_p/value"] = {"kind": "tensor", "value": torch.ones(2), "params": {}}
    return out


def scores(answer, records=None, notebook=None, whole=None):
    run = TaskRun(answer, task_records() if records is None else records, TASK_REFERENCE, notebook)
    whole = {"ex_q/value": {"kind": "value", "value": 3, "params": {}}} if whole is None else whole
    return {
        s.grade_id: (s.score, s.message) for s in score_notebook(CELLS, whole, WHOLE_REFERENCE, tasks={"ex_p": run})
    }


def test_constraint_records_come_from_the_reference():
    assert constraint_keys(WHOLE_REFERENCE) == {"ex_p/constraint": PARAMS}
    assert answer_problems(CLEAN, {"ex_q/value": WHOLE_REFERENCE["ex_q/value"]}) == {}


def test_a_clean_answer_cell_scores_full_points():
    assert scores(CLEAN) == {"ex_p": (3.0, "all 2 tests passed"), "ex_q": (1.0, "all 1 tests passed")}


def test_a_violation_scores_zero_for_its_task_only_in_the_test_cells_words():
    bad = "def product(A, B):\n    return A @ B\n"
    said = "`product` uses `@` (matrix multiplication) on line 2, which this task forbids (a built-in matrix product)"
    assert answer_problems(bad, TASK_REFERENCE) == {"ex_p/constraint": summary([said])}
    got = scores(bad)
    assert got["ex_p"] == (0.0, f"1 of 2 tests failed:\n- visible check 'constraint' failed: {said}")
    assert got["ex_q"][0] == 1.0


def test_a_kernel_that_recorded_a_clean_outcome_cannot_pass_a_violating_cell():
    """Whatever the task's kernel recorded, the grader's own reading of the answer cell decides the constraint."""
    got = scores("def product(A, B):\n    return torch.mm(A, B)\n", records=task_records([]))
    assert got["ex_p"][0] == 0.0 and "`torch.mm`" in got["ex_p"][1]


def test_what_the_kernel_saw_fails_the_task_too():
    said = "`product` runs the operator `aten.mm` on line 2, which this task forbids (a built-in matrix product)"
    got = scores(CLEAN, records=task_records([said]))
    assert got["ex_p"] == (0.0, f"1 of 2 tests failed:\n- visible check 'constraint' failed: {said}")


def test_a_missing_answer_cell_fails_closed():
    got = scores(None)
    assert got["ex_p"][0] == 0.0 and "is not in this task's answer cell" in got["ex_p"][1]
    assert got["ex_q"][0] == 1.0


def test_a_broken_reference_parameter_fails_closed_instead_of_crashing():
    reference = {
        "ex_p/constraint": {
            "kind": "constraint",
            "value": [],
            "params": {"function": "product", "rules": ["no_such_rule"]},
        }
    }
    assert answer_problems(CLEAN, reference) == {"ex_p/constraint": "the constraint check could not run (KeyError)"}


def test_a_test_cell_that_stopped_says_why_in_the_grade():
    """The learner's notebook showed the reason (an unanswered task, a failed check): the grade says the same."""

    def executed(ename, evalue):
        test = nbformat.v4.new_code_cell("...")
        test.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "ex_p", "points": 3}
        test.outputs = [nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])]
        return nbformat.writes(nbformat.v4.new_notebook(cells=[test]))

    stub = "def product(A, B):\n    raise NotImplementedError()\n"
    got = scores(
        stub, records=task_records([], value=False), notebook=executed("NotImplementedError", unanswered("product"))
    )
    assert got["ex_p"] == (0.0, unanswered("product"))
    stopped = executed("NameError", "name 'x' is not defined")
    got = scores(CLEAN, records=task_records([], value=False), notebook=stopped)
    assert got["ex_p"] == (
        0.0,
        "1 of 2 tests failed:\n- 1 test did not run ('value'): the test cell stopped at: "
        "NameError: name 'x' is not defined",
    )


def test_a_task_job_is_the_setup_the_answer_cell_and_the_test_cell():
    def cell(source, **meta):
        made = nbformat.v4.new_code_cell(source)
        if meta:
            made.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True, **meta}
        return made

    source = nbformat.v4.new_notebook(
        cells=[
            cell("import torch", grade_id="setup"),
            cell("def product(A, B):\n    pass", grade_id="ex_p_answer", solution=True, locked=False),
            cell("safe = constrained(product, 'matmul', key='ex_p/constraint')", grade_id="ex_p", grade=True, points=3),
            cell("def q():\n    pass", grade_id="ex_q_answer", solution=True, locked=False),
            cell("record('ex_q/value', q(), kind='value')", grade_id="ex_q", grade=True, points=1),
        ]
    )
    assert constrained_task_ids(source) == ["ex_p"]
    submitted = nbformat.v4.new_notebook(cells=[cell("import os"), *source.cells[:2], cell("product = None")])
    submitted.cells[2].source = CLEAN
    built = task_notebook(source, submitted, "ex_p")
    assert [c.source for c in built.cells] == ["import torch", CLEAN, source.cells[2].source]
    assert answer_source(submitted, "ex_p_answer") == CLEAN and answer_source(submitted, "ex_q_answer") is None
    assert [c.source for c in task_notebook(source, None, "ex_p").cells][1] == ""
    assert split_job_name(job_name("hw", "ex_p")) == ("hw", "ex_p")
