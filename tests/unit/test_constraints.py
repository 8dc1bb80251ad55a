"""Spec for stated constraints ("without @", "without autograd", ...): the answer cell's rules and the kernel's guard.

The same static rules run in the learner's test cell and in the grader, on the answer cell alone
(``course_utils.constraint_rules``); the kernel adds a guard that sees every ATen operator the function runs, and
the library function it called (``course_utils.constraints``). Every message names the operation and the line.
"""

from __future__ import annotations

import ast
import linecache
import types

import pytest
import torch
import torch.nn.functional as F

from course_utils import checks
from course_utils.checks import CheckFailure
from course_utils.constraint_rules import (
    ESCAPE_ATTRIBUTES,
    RULES,
    SAFE_SUBMODULES,
    answer_cell_problems,
    cell_problems,
    summary,
)
from course_utils.constraints import constrained
from course_utils.records import load_records

A, B = torch.randn(2, 3), torch.randn(3, 4)
GOOD = "def product(A, B):\n    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(dim=1)\n"


def define(source: str, name: str, filename: str | None = None, register: bool = True, **namespace):
    """Run ``source`` as a notebook cell would (its text available to inspect via linecache); return ``name``."""
    filename = filename or f"<cell-{abs(hash(source))}>"
    if register:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"torch": torch, "nn": torch.nn, "F": F, **namespace}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def failure(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailure) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- static rules of the answer cell


def test_a_clean_cell_passes():
    assert cell_problems(GOOD, "product", ["matmul"]) == []


@pytest.mark.parametrize(
    "body, named",
    [
        ("return A @ B", "`@` (matrix multiplication)"),
        ("C = A\n    C @= B\n    return C", "`@` (matrix multiplication)"),
        ("return torch.matmul(A, B)", "`torch.matmul`"),
        ("return A.mm(B)", "`A.mm`"),
        ("return torch.einsum('ik,kj->ij', A, B)", "`torch.einsum`"),
        ("return F.linear(A, B.T)", "`F.linear`"),
        ("return torch.linalg.multi_dot([A, B])", "`torch.linalg"),
        ("return torch.zeros(2, 4).addmm_(A, B)", "addmm_`"),
        ("return torch.zeros(1, 2, 4).baddbmm_(A[None], B[None])[0]", "baddbmm_`"),
        ("return F.embedding_bag(torch.arange(3), B, torch.tensor([0]), per_sample_weights=A[0])", "`F.embedding_bag`"),
    ],
)
def test_each_matrix_product_is_named_with_its_line(body, named):
    problems = cell_problems(f"def product(A, B):\n    {body}\n", "product", ["matmul"])
    assert problems and named in problems[0] and " on line " in problems[0]
    assert "which this task forbids (a built-in matrix product)" in problems[0]


@pytest.mark.parametrize(
    "rule, body, named",
    [
        ("sigmoid", "return torch.sigmoid(z)", "`torch.sigmoid`"),
        ("sigmoid", "return torch.special.expit(z)", "`torch.special.expit`"),
        ("sigmoid", "return -F.softplus(-z)", "`F.softplus`"),
        ("sigmoid", "return -torch.logaddexp(torch.zeros_like(z), -z)", "`torch.logaddexp`"),
        (
            "sigmoid",
            "return -F.binary_cross_entropy_with_logits(z, torch.ones_like(z), reduction='none')",
            "`F.binary_cross_entropy_with_logits`",
        ),
        ("autograd", "z = z.clone().requires_grad_()\n    z.sum().backward()\n    return z.grad", "requires_grad_()"),
        ("autograd", "return torch.autograd.grad(z.sum(), z)[0]", "`torch.autograd"),
        ("autograd", "w = torch.ones(1, requires_grad=True)\n    return w * z", "`requires_grad=True`"),
        ("autograd", "z.requires_grad = True\n    return z", "sets `z.requires_grad`"),
        ("loss_functions", "return F.cross_entropy(z, z)", "`F.cross_entropy`"),
        ("loss_functions", "return torch.nn.SmoothL1Loss()(z, z)", "`torch.nn.SmoothL1Loss`"),
        ("loss_functions", "return F.huber_loss(z, z)", "`F.huber_loss`"),
        ("convolution", "return torch.nn.Conv2d(1, 1, 3)(z)", "`torch.nn.Conv2d`"),
        (
            "convolution",
            "return torch.mkldnn_convolution(z, z, None, [0, 0], [1, 1], [1, 1], 1)",
            "`torch.mkldnn_convolution`",
        ),
        ("convolution", "return F.max_pool2d(z, 2)", "`F.max_pool2d`"),
    ],
)
def test_each_rule_names_what_it_forbids(rule, body, named):
    problems = cell_problems(f"def f(z):\n    {body}\n", "f", [rule])
    assert any(named in p and RULES[rule].what in p for p in problems), problems


@pytest.mark.parametrize(
    "source, named",
    [
        ("import numpy as np\ndef f(z):\n    return np.tanh(z)\n", "imports `numpy`"),
        ("def f(z):\n    return helper(z)\n", "uses `helper` on line 2: its cell does not define it"),
        ("def f(z):\n    return getattr(torch, 'sig' + 'moid')(z)\n", "uses `getattr`"),
        ("def f(z):\n    return eval('torch.sigmoid(z)')\n", "uses `eval`"),
        ("def f(z):\n    return torch._C._nn.gelu(z)\n", "private attribute `torch._C"),
        ("def f(z):\n    return torch.ops.aten.sigmoid(z)\n", "`torch.ops` on line 2: it reaches code outside"),
        ("def f(z):\n    return z.__class__(z)\n", "private attribute `z.__class__`"),
        ("%time x = 1\ndef f(z):\n    return z\n", "IPython magics"),
        ("f = torch.tanh\n", "must be defined with `def`"),
        ("def f(z):\n    global g\n    g = 1\n    return z\n", "`global` statement"),
        ("def f(z)\n    return z\n", "not valid Python"),
        # torch and F re-export modules: an attribute chain is no way around the rules
        ("def f(z):\n    return torch.builtins.getattr(F.np, 'tanh')(z)\n", "`torch.builtins`"),
        ("def f(z):\n    return torch.importlib.import_module('numpy').tanh(z)\n", "`torch.importlib`"),
        ("def f(z):\n    return torch.sys.modules['numpy'].tanh(z)\n", "`torch.sys`"),
        ("def f(z):\n    return F.np.tanh(z)\n", "`F.np`"),
        ("def f(z):\n    return torch.overrides.get_overridable_functions()\n", "`torch.overrides`"),
        ("def f(z):\n    return torch.utils.data.DistributedSampler(z)\n", "`torch.utils`"),
        ("def f(z):\n    return torch.os.system('ls')\n", "`torch.os`"),
        ("def f(z):\n    return z.tanh.__self__\n", "private attribute"),
        ("torch.Tensor.tanh = torch.Tensor.sigmoid\ndef f(z):\n    return z.tanh()\n", "changes `torch.Tensor.tanh`"),
        ("def f(z):\n    del F.softplus\n    return z\n", "changes `F.softplus`"),
    ],
)
def test_escape_hatches_are_refused(source, named):
    problems = cell_problems(source, "f", ["self_contained"])
    assert any(named in p for p in problems), problems


@pytest.mark.parametrize(
    "rule, source",
    [
        ("sigmoid", "def f(z):\n    return torch.clamp(z, max=0) - torch.special.log1p(torch.exp(-z.abs()))\n"),
        ("sigmoid", "def f(z):\n    with torch.inference_mode():\n        return torch.log1p(torch.exp(-z))\n"),
        ("autograd", "def f(z):\n    with torch.inference_mode():\n        return 2 * z\n"),
        ("autograd", "def f(z):\n    w = z.clone().requires_grad_(False)\n    return w.requires_grad, 2 * w\n"),
        ("autograd", "def f(z):\n    w = z.clone()\n    w.requires_grad = False\n    return w\n"),
        ("matmul", "@torch.no_grad()\ndef f(A, B):\n    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(1)\n"),
        (
            "matmul",
            "import torch\nimport torch.nn.functional as F\nfrom torch import nn\nimport math\n\n\n"
            "def f(A, B):\n    return (A[:, :, None] * B[None]).sum(1)\n",
        ),
        ("convolution", "def f(image, kernel):\n    return F.pad(image, (1, 1)) * kernel.sum()\n"),
    ],
)
def test_legitimate_answers_are_accepted(rule, source):
    assert cell_problems(source, "f", [rule]) == []


def test_a_name_bound_in_another_scope_does_not_make_a_global_defined():
    """`helper` assigned inside g is g's local: f's `helper` is still the notebook's global."""
    source = "def f(z):\n    return helper(z)\n\n\ndef g():\n    helper = 1\n    return helper\n"
    assert any("`helper`" in p for p in cell_problems(source, "f", ["self_contained"]))


def test_helpers_and_builtins_of_the_cell_itself_are_fine():
    source = (
        "def _scale(z):\n    return 2 * z\n\n\ndef f(z):\n    rows = [_scale(r) for r in z]\n"
        "    return torch.stack(rows) + len(rows) + math.pi\n"
    )
    assert cell_problems(source, "f", ["sigmoid"]) == []


def test_functions_the_test_cell_provides_may_be_used():
    source = "def slope(z):\n    return torch.exp(log_sigmoid(z) + log_sigmoid(-z))\n"
    assert cell_problems(source, "slope", ["sigmoid"]) != []
    assert cell_problems(source, "slope", ["sigmoid"], allowed=["log_sigmoid"]) == []


def test_required_functions_must_be_used_unless_the_task_is_not_written_yet():
    assert answer_cell_problems(
        "def backward(z):\n    return 2 * z\n", "backward", ["autograd"], uses=["slope"], require=["slope"]
    ) == ["`backward` must use `slope` (the task asks for it)"]
    assert (
        answer_cell_problems(
            "def backward(z):\n    return 2 * slope(z)\n", "backward", ["autograd"], uses=["slope"], require=["slope"]
        )
        == []
    )
    stub = 'def backward(z):\n    """Doc."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    assert answer_cell_problems(stub, "backward", ["autograd"], uses=["slope"], require=["slope"]) == []


def test_a_summary_is_the_first_problem_and_a_count():
    assert summary(["a"]) == "a"
    assert summary(["a", "b", "c"]) == "a (and 2 more problems)"


def test_every_module_torch_exposes_is_either_reachable_or_an_escape():
    """torch re-exports modules (torch.sys, torch.builtins, F.np...): each one a cell could reach by an attribute
    chain must be a submodule the course allows or an attribute the static check refuses."""
    for lazy in torch._lazy_modules:  # modules torch imports on first use (torch.onnx): in dir(torch) only then
        getattr(torch, lazy)
    roots = [torch, torch.nn, F, torch.linalg, torch.special, torch.fft, torch.nn.init, torch.optim, torch.Tensor]
    exposed = {
        name
        for root in roots
        for name in dir(root)
        if not name.startswith("_") and isinstance(getattr(root, name, None), types.ModuleType)
    }
    unknown = sorted(exposed - ESCAPE_ATTRIBUTES - SAFE_SUBMODULES)
    assert not unknown, f"decide for each: SAFE_SUBMODULES or ESCAPE_ATTRIBUTES in constraint_rules: {unknown}"
    assert not ESCAPE_ATTRIBUTES & SAFE_SUBMODULES


def test_rules_judge_in_place_variants_and_operators():
    assert RULES["matmul"].forbids("addmm_") and RULES["sigmoid"].forbids("sigmoid_")
    assert not RULES["sigmoid"].forbids("log1p") and not RULES["sigmoid"].forbids("special")
    assert RULES["matmul"].forbids_operator("aten::addmm_") and not RULES["matmul"].forbids_operator("aten::sum")
    assert RULES["matmul"].forbids_operator("aten::_embedding_bag_forward_only")
    assert not RULES["matmul"].forbids_operator("aten::mul", pointwise=True)
    assert RULES["convolution"].forbids_operator("aten::mkldnn_convolution")
    assert not RULES["convolution"].forbids_operator("aten::_convert_indices_from_coo_to_csr")
    assert RULES["loss_functions"].forbids_operator("aten::nll_loss_forward")
    assert not RULES["loss_functions"].forbids_operator("aten::logsumexp")


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
    assert message == (
        "`product` uses `@` (matrix multiplication) on line 2, which this task forbids (a built-in matrix product)"
    )
    assert load_records(record_file)["ex_t/constraint"]["value"] == [message]


@pytest.mark.parametrize(
    "rule, body, named",
    [
        ("matmul", "return torch.mm(A, B)", "calls `torch.mm`"),
        ("matmul", "return A @ B", "`torch.Tensor.matmul`"),
        ("matmul", "return torch.nn.functional.linear(A, B.T)", "calls `torch.nn.functional.linear`"),
        ("matmul", "return torch.zeros(2, 4).addmm_(A, B)", "`torch.Tensor.addmm_`"),
        ("matmul", "return torch.ops.aten.mm(A, B)", "`aten.mm`"),
        ("matmul", "return torch.linalg.multi_dot([A, B])", "runs the operator `aten.mm`"),
        ("matmul", "return torch.from_numpy(A.numpy() @ B.numpy())", "converts a tensor to NumPy"),
        ("sigmoid", "return torch.sigmoid(A)", "calls `torch.sigmoid`"),
        ("sigmoid", "return A.sigmoid()", "calls `torch.Tensor.sigmoid`"),
        (
            "sigmoid",
            "return -F.cross_entropy(torch.stack([A, B[:2, :3]], 2), torch.ones(2, 3, dtype=torch.long))",
            "`torch.nn.functional.cross_entropy`",
        ),
        ("autograd", "x = A.clone().requires_grad_()\n    return x * 2", "requires gradients"),
        ("autograd", "x = torch.zeros(2, requires_grad=True)\n    return x + 1", "requires gradients"),
    ],
)
def test_without_source_the_guard_stops_the_forbidden_call(rule, body, named):
    fn = define(f"def f(A, B):\n    {body}\n", "f", register=False)  # only the run-time guard can see it
    message = failure(constrained(fn, rule), A, B)
    assert named in message and (RULES[rule].what in message or "NumPy" in named), message


def test_the_guard_sees_operators_run_by_nested_library_code():
    """multi_dot is Python calling mm: a torch-function mode sees only multi_dot, the dispatch guard sees aten.mm."""
    f = define("def f(A, B):\n    C = A.clone()\n    return torch.linalg.multi_dot([C, B])\n", "f", register=False)
    message = failure(constrained(f, "matmul"), A, B)
    assert message.startswith("`f` runs the operator `aten.mm` (through `torch.linalg") and "on line 3" in message


@pytest.mark.parametrize(
    "rule, body",
    [
        (
            "matmul",
            "print(A)\n    out = torch.zeros(2, 4)\n    for i in range(2):\n        for j in range(4):\n"
            "            out[i, j] = (A[i] * B[:, j]).sum()\n    return torch.stack(list(out)).contiguous()",
        ),
        ("autograd", "with torch.no_grad():\n        return A * 2"),
        ("autograd", "w = torch.ones(1, requires_grad=True)\n    with torch.inference_mode():\n        return w * A"),
        ("sigmoid", "return torch.clamp(A, max=0) - torch.special.log1p(torch.exp(-A.abs()))"),
        ("sigmoid", "return 0.5 * (1 + torch.tanh(A / 2))"),
    ],
)
def test_the_guard_lets_legitimate_code_run(rule, body):
    fn = define(f"def f(A, B):\n    {body}\n", "f", register=False)
    constrained(fn, rule)(A, B)


def test_a_swallowed_violation_still_fails_after_the_call(record_file):
    fn = define(
        "def f(A, B):\n    try:\n        return torch.mm(A, B)\n    except Exception:\n"
        "        return (A.unsqueeze(2) * B.unsqueeze(0)).sum(1)\n",
        "f",
        register=False,
    )
    guarded = constrained(fn, "matmul", key="ex_t/constraint")
    assert "calls `torch.mm`" in failure(guarded, A, B)
    assert load_records(record_file)["ex_t/constraint"]["value"] != []


def test_the_guard_is_off_outside_the_learners_function():
    product = constrained(define(GOOD, "product"), "matmul")
    result = product(A, B)
    torch.testing.assert_close(result, A @ B)  # `@` in the test itself is fine


def test_a_decorated_answer_is_judged_by_its_own_cell():
    source = "@torch.no_grad()\ndef product(A, B):\n    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(dim=1)\n"
    torch.testing.assert_close(constrained(define(source, "product"), "matmul")(A, B), A @ B)


def test_functions_of_earlier_tasks_are_the_courses_versions_run_unguarded():
    """`log_sigmoid` inside `slope` is the course's (here built on the forbidden sigmoid, which is fine: it is not
    the learner's code); after the call the learner's own name is back."""
    mine = define("def log_sigmoid(z):\n    return torch.sigmoid(z)\n", "log_sigmoid")
    namespace = {"log_sigmoid": mine}
    slope = define("def slope(z):\n    return torch.exp(log_sigmoid(z) + log_sigmoid(-z))\n", "slope", **namespace)
    guarded = constrained(slope, "sigmoid", uses={"log_sigmoid": F.logsigmoid})
    torch.testing.assert_close(guarded(torch.tensor([0.0])), torch.tensor([0.25]))
    assert slope.__globals__["log_sigmoid"] is mine
    with pytest.raises(TypeError, match="maps a function's name"):
        constrained(slope, "sigmoid", uses=[mine])


def test_the_name_checked_is_the_name_the_test_cell_passes():
    """`log_sigmoid = helper`: the task's function is `log_sigmoid`, which is not defined by a `def` (the grader,
    reading the answer cell for `log_sigmoid`, says the same)."""
    source = "def helper(z):\n    return torch.log1p(z)\n\n\nlog_sigmoid = helper\n"
    log_sigmoid = define(source, "log_sigmoid")
    with pytest.raises(CheckFailure, match="`log_sigmoid` must be defined with `def`"):
        constrained(log_sigmoid, "sigmoid")


def test_wrong_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown constraint rule"):
        constrained(define(GOOD, "product"), "no_such_rule")
    assert "should be a function you define with `def`" in failure(constrained, torch.matmul, "matmul")


def test_the_static_check_never_imports_torch():
    """The grader's side parses only: constraint_rules imports neither torch nor anything that does."""
    import course_utils.constraint_rules as rules

    tree = ast.parse(open(rules.__file__).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "ast", "re", "symtable", "dataclasses", "IPython"}
