"""Spec for course_utils.constraints: stated constraints ("without @", "without autograd", ...) and their checks.

The same static rules run in the learner's kernel (instant feedback) and in the grader (trusted); the kernel
adds a TorchFunctionMode that stops a forbidden call as it happens. Every message names the operation.
"""
from __future__ import annotations

import linecache

import pytest
import torch

from course_utils import checks
from course_utils.checks import CheckFailure
from course_utils.constraint_rules import (
    RULES,
    cell_problems,
    integrity_problems,
    module_aliases,
    notebook_problems,
)
from course_utils.constraints import constrained
from course_utils.records import load_records

A, B = torch.randn(2, 3), torch.randn(3, 4)
GOOD = "def product(A, B):\n    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(dim=1)\n"


def define(source: str, name: str, filename: str | None = None, **namespace):
    """Run ``source`` as a notebook cell would (its text available to inspect via linecache); return ``name``."""
    filename = filename or f"<cell-{abs(hash(source))}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, **namespace}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def failure(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailure) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- static rules of the defining cell


def test_a_clean_cell_passes():
    assert cell_problems(GOOD, "product", ["matmul"]) == []


@pytest.mark.parametrize("body, named", [
    ("return A @ B", "`@` (matrix multiplication)"),
    ("C = A\n    C @= B\n    return C", "`@` (matrix multiplication)"),
    ("return torch.matmul(A, B)", "`torch.matmul`"),
    ("return A.mm(B)", "`A.mm`"),
    ("return torch.einsum('ik,kj->ij', A, B)", "`torch.einsum`"),
    ("return F.linear(A, B.T)", "`F.linear`"),
    ("return torch.linalg.multi_dot([A, B])", "`torch.linalg.multi_dot`"),
])
def test_each_matrix_product_is_named(body, named):
    problems = cell_problems(f"def product(A, B):\n    {body}\n", "product", ["matmul"])
    assert problems and named in problems[0] and "which this task forbids (a built-in matrix product)" in problems[0]


@pytest.mark.parametrize("rule, body, named", [
    ("sigmoid", "return torch.sigmoid(z)", "`torch.sigmoid`"),
    ("sigmoid", "return torch.special.expit(z)", "`torch.special`"),
    ("sigmoid", "return -F.softplus(-z)", "`F.softplus`"),
    ("autograd", "z = z.clone().requires_grad_()\n    z.sum().backward()\n    return z.grad", "`z.clone().requires_grad_`"),
    ("autograd", "return torch.autograd.grad(z.sum(), z)[0]", "`torch.autograd"),
    ("autograd", "w = torch.ones(1, requires_grad=True)\n    return w * z", "`requires_grad=True`"),
    ("loss_functions", "return F.cross_entropy(z, z)", "`F.cross_entropy`"),
    ("convolution", "return torch.nn.Conv2d(1, 1, 3)(z)", "`torch.nn.Conv2d`"),
])
def test_each_rule_names_what_it_forbids(rule, body, named):
    problems = cell_problems(f"def f(z):\n    {body}\n", "f", [rule])
    assert any(named in p and RULES[rule].what in p for p in problems), problems


@pytest.mark.parametrize("source, named", [
    ("import numpy as np\ndef f(z):\n    return np.tanh(z)\n", "imports (`numpy`)"),
    ("def f(z):\n    return helper(z)\n", "uses `helper`, which its cell does not define"),
    ("def f(z):\n    return getattr(torch, 'sig' + 'moid')(z)\n", "uses `getattr`"),
    ("def f(z):\n    return eval('torch.sigmoid(z)')\n", "uses `eval`"),
    ("def f(z):\n    return torch._C._nn.gelu(z)\n", "private attribute `torch._C"),
    ("def f(z):\n    return torch.ops.aten.sigmoid(z)\n", "`torch.ops`, which reaches code outside"),
    ("def f(z):\n    return z.__class__(z)\n", "private attribute `z.__class__`"),
    ("%time x = 1\ndef f(z):\n    return z\n", "IPython magics"),
    ("f = torch.tanh\n", "must be defined with `def`"),
    ("def f(z):\n    global g\n    g = 1\n    return z\n", "`global` statement"),
    ("def f(z)\n    return z\n", "not valid Python"),
])
def test_escape_hatches_are_refused(source, named):
    problems = cell_problems(source, "f", ["self_contained"])
    assert any(named in p for p in problems), problems


def test_a_name_bound_in_another_scope_does_not_make_a_global_defined():
    """`helper` assigned inside g is g's local: f's `helper` is still the notebook's global."""
    source = "def f(z):\n    return helper(z)\n\n\ndef g():\n    helper = 1\n    return helper\n"
    assert any("`helper`" in p for p in cell_problems(source, "f", ["self_contained"]))


def test_helpers_and_builtins_of_the_cell_itself_are_fine():
    source = ("def _scale(z):\n    return 2 * z\n\n\ndef f(z):\n    rows = [_scale(r) for r in z]\n"
              "    return torch.stack(rows) + len(rows) + math.pi\n")
    assert cell_problems(source, "f", ["sigmoid"]) == []


def test_other_constrained_functions_may_be_used_when_allowed():
    source = "def slope(z):\n    return torch.exp(log_sigmoid(z) + log_sigmoid(-z))\n"
    assert cell_problems(source, "slope", ["sigmoid"]) != []
    assert cell_problems(source, "slope", ["sigmoid"], allowed=["log_sigmoid"]) == []


# ---------------------------------------------------------------- the rest of the notebook (grader only)


@pytest.mark.parametrize("cell, named", [
    ("product = lambda A, B: A @ B", "redefines `product`"),
    ("def product(A, B):\n    return A @ B", "redefines `product`"),
    ("torch.Tensor.sum = lambda self, dim: self", "assigns to `torch.Tensor.sum`"),
    ("t = torch\nt.exp = None", "assigns to `t.exp`"),
    ("T = torch.Tensor\ndel T.sum", "assigns to `T.sum`"),
    ("x = torch.ones(2)\nx.__class__ = object", "dunder attributes"),
    ("exec('product = 1')", "uses `exec`"),
    ("globals()['product'] = 1", "uses `globals`"),
    ("setattr(torch, 'mul', torch.matmul)", "uses `setattr`"),
    ("import importlib", "imports `importlib`"),
    ("import sys", "imports `sys`"),
    ("from helper import patch", "imports `helper`"),
    ("!pip install something", "shell commands"),
    ("%run other.py", "IPython magics"),
    ("%time product = lambda A, B: A @ B", "redefines `product`"),
    ("%%timeit\ntorch.matmul = None\n", "assigns to `torch.matmul`"),
    ("from IPython import get_ipython", "imports `IPython`"),
    ("import numpy as torch", "binds `torch` to something other than `torch`"),
    ("torch = None", "rebinds `torch`"),
    ("sum = lambda values: 0", "redefines `sum`"),
])
def test_other_cells_may_not_change_what_a_constrained_function_uses(cell, named):
    problems = notebook_problems(["import torch", GOOD.replace("(dim=1)", "(dim=1) + sum([])"), cell], "product",
                                 ["matmul"])
    assert any(named in p and p.startswith("another cell") for p in problems), problems


@pytest.mark.parametrize("cell", [
    "import torch\nimport torch.nn.functional as F\nfrom torch import nn\nimport numpy as np\nimport math",
    "%matplotlib inline",
    "%timeit -n 3 product(A, B)",
    "%%time\nresult = product(A, B)\n",
    "from IPython.display import display",
    "x = torch.ones(3)\nx.requires_grad = True\nmodel = torch.nn.Linear(2, 1)\nmodel.weight.data.zero_()",
    "from course_utils.checks import check_tensor, record\ncheck_tensor(product(A, B), A @ B)",
    "for sum_ in range(3):\n    print(sum_)",
])
def test_ordinary_cells_are_fine(cell):
    assert notebook_problems(["import torch", GOOD, cell], "product", ["matmul"]) == []


def test_a_module_the_submission_ships_may_not_be_imported():
    assert integrity_problems("import pandas") == []
    assert any("ships as its own file" in p for p in integrity_problems("import pandas", shipped={"pandas"}))


def test_module_aliases_follow_assignments():
    assert {"torch", "t", "T", "np"} <= module_aliases(["import numpy as np", "t = torch", "T = t.Tensor", "x = 3"])
    assert "x" not in module_aliases(["import numpy as np", "t = torch", "T = t.Tensor", "x = 3"])


def test_the_function_must_be_defined_exactly_once():
    assert any("is not defined in any cell" in p for p in notebook_problems(["import torch"], "product", ["matmul"]))
    twice = notebook_problems(["import torch", GOOD, GOOD], "product", ["matmul"])
    assert any("is defined in 2 cells" in p for p in twice)


def test_required_functions_must_be_used():
    cells = ["import torch", "def slope(z):\n    return z * (1 - z)\n", "def backward(z):\n    return 2 * z\n"]
    problems = notebook_problems(cells, "backward", ["autograd"], uses=["slope"], require=["slope"])
    assert problems == ["`backward` must use your `slope` (the task asks for it)"]
    cells[2] = "def backward(z):\n    return 2 * slope(z)\n"
    assert notebook_problems(cells, "backward", ["autograd"], uses=["slope"], require=["slope"]) == []


def test_a_used_function_must_obey_the_rules_too():
    cells = ["import torch", "def helper(z):\n    return torch.sigmoid(z)\n", "def f(z):\n    return helper(z) * 2\n"]
    problems = notebook_problems(cells, "f", ["sigmoid"], uses=["helper"])
    assert problems == ["`helper` uses `torch.sigmoid`, which this task forbids (the library's sigmoid (or a "
                        "function built on it))"]


# ---------------------------------------------------------------- in the learner's kernel


@pytest.fixture
def record_file(tmp_path, monkeypatch):
    path = tmp_path / "records.pt"
    monkeypatch.setenv(checks.RECORD_ENV, str(path))
    return path


def test_a_clean_function_runs_and_its_outcome_is_recorded(record_file):
    product = constrained(define(GOOD, "product"), "matmul", key="ex_t/constraint")
    torch.testing.assert_close(product(A, B), A @ B)
    entry = load_records(record_file)["ex_t/constraint"]
    assert entry["kind"] == "constraint" and entry["value"] == []
    assert entry["params"] == {"visible": True, "function": "product", "rules": ["matmul"], "uses": [], "require": []}


def test_the_cells_source_is_checked_before_any_call(record_file):
    bad = define("def product(A, B):\n    return A @ B\n", "product")
    message = failure(constrained, bad, "matmul", key="ex_t/constraint")
    assert message == "`product` uses `@` (matrix multiplication), which this task forbids (a built-in matrix product)"
    assert load_records(record_file)["ex_t/constraint"]["value"] == [message]


@pytest.mark.parametrize("rule, body, named", [
    ("matmul", "return torch.mm(A, B)", "called `torch.mm`"),
    ("matmul", "return A @ B", "called `torch.Tensor.matmul`"),
    ("matmul", "return torch.nn.functional.linear(A, B.T)", "called `torch.nn.functional.linear`"),
    ("sigmoid", "return torch.sigmoid(A)", "called `torch.sigmoid`"),
    ("sigmoid", "return A.sigmoid()", "called `torch.Tensor.sigmoid`"),
    ("autograd", "x = A.clone().requires_grad_()\n    return x", "called `torch.Tensor.requires_grad_`"),
    ("autograd", "x = torch.zeros(2, requires_grad=True)\n    return x + 1", "requires gradients"),
])
def test_without_source_the_guard_stops_the_forbidden_call(rule, body, named):
    namespace = {"torch": torch}
    exec(f"def f(A, B):\n    {body}\n", namespace)  # no linecache entry: only the run-time guard can see it
    message = failure(constrained(namespace["f"], rule), A, B)
    assert named in message and RULES[rule].what in message


def test_a_swallowed_violation_still_fails_after_the_call(record_file):
    namespace = {"torch": torch}
    exec("def f(A, B):\n    try:\n        return torch.mm(A, B)\n    except Exception:\n"
         "        return (A.unsqueeze(2) * B.unsqueeze(0)).sum(1)\n", namespace)
    guarded = constrained(namespace["f"], "matmul", key="ex_t/constraint")
    assert "called `torch.mm`" in failure(guarded, A, B)
    assert load_records(record_file)["ex_t/constraint"]["value"] != []


def test_the_guard_is_off_outside_the_learners_function():
    product = constrained(define(GOOD, "product"), "matmul")
    result = product(A, B)
    torch.testing.assert_close(result, A @ B)  # `@` in the test itself is fine


def test_wrong_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown constraint rule"):
        constrained(define(GOOD, "product"), "no_such_rule")
    assert "should be a function you define with `def`" in failure(constrained, torch.matmul, "matmul")
