"""What a learner sees in a real Jupyter kernel: unanswered tasks, failing checks, their own errors, constraints."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.wording import unanswered


@pytest.fixture(scope="module")
def kernel_outputs():
    """A notebook run in a real kernel: an unanswered task, a failing check, a learner's own error."""
    cells = [
        "import torch\nfrom course_utils.checks import check_grad_fn, check_tensor",
        "def arange_matrix(rows, cols):\n    # YOUR CODE HERE\n    raise NotImplementedError()",
        "check_tensor(arange_matrix(2, 3), torch.ones(2, 3))",
        "check_tensor(torch.zeros(2), torch.ones(2), name='zeros')",
        "raise NotImplementedError('not a stub')",
        "def g(x):\n    return x.nonexistent()\ncheck_grad_fn(g, lambda x: (x ** 2).sum(), (torch.ones(2),))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True).execute()
    return [[o for o in cell.outputs if o.output_type == "error"] for cell in nb.cells]


def text(error) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error.traceback))


def test_an_unanswered_task_names_the_function_to_write_and_still_fails_the_cell(kernel_outputs):
    [error] = kernel_outputs[2]  # an "error" output: nbgrader grades the cell as failed
    assert error.ename == "NotImplementedError"
    assert error.evalue == unanswered("arange_matrix")  # the sentence Validate and the grade say too
    assert text(error) == f"NotImplementedError: {error.evalue}"
    [other] = kernel_outputs[4]  # any other NotImplementedError keeps its usual traceback
    assert other.evalue == "not a stub" and "Traceback" in text(other)


def test_a_failing_check_shows_the_learners_cell_and_the_message_not_the_librarys_frames(kernel_outputs):
    [error] = kernel_outputs[3]
    shown = text(error)
    assert error.ename == "CheckFailure" and "check_tensor(torch.zeros(2), torch.ones(2), name='zeros')" in shown
    assert shown.rstrip().endswith(f"CheckFailure: {error.evalue}")
    assert "checks.py" not in shown and "compare.py" not in shown and "_check(" not in shown


def test_an_error_in_the_learners_function_shows_their_frames(kernel_outputs):
    [error] = kernel_outputs[5]
    shown = text(error)
    assert "return x.nonexistent()" in shown and "AttributeError" in shown and "checks.py" not in shown


def test_in_a_real_kernel_the_cell_of_a_function_is_found(tmp_path):
    """IPython keeps each cell's source for inspect: the kernel-side check sees the whole answer cell."""
    cells = [
        "import torch\nfrom course_utils.constraints import constrained",
        "def product(A, B):\n    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(1)",
        "print(constrained(product, 'matmul')(torch.ones(2, 3), torch.ones(3, 2)).tolist())",
        "def bad(A, B):\n    return A @ B",
        "constrained(bad, 'matmul')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert nb.cells[2].outputs[0]["text"].strip() == "[[3.0, 3.0], [3.0, 3.0]]"
    assert nb.cells[4].outputs[0]["ename"] == "CheckFailure" and "`@`" in nb.cells[4].outputs[0]["evalue"]
