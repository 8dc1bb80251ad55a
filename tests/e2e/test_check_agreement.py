"""Spec: one rule for both sides. What a learner sees in the notebook is what the grader decides.

Each solution notebook runs once, in this process, with recording on (its records are the trusted
reference, as in grading) while every keyed check, every ``record`` call and every ``constrained`` call is
captured with its arguments (each cell is registered with ``linecache`` as IPython does, so the kernel-side
constraint check reads the cell's source as it would in Jupyter). Then, for each captured call, a battery of
answers is built from the solution's own answer, and for each answer:

* the **visible verdict**: the check itself, called in this process as the notebook would call it
  (for a hidden ``record``: the rule a learner-side check applies to that raw value, with the reference
  value as the expected one and the reference's parameters);
* the **trusted verdict**: ``compare_records`` on the record file that call wrote, against the reference
  (for a constrained task, together with the grader's static check of the notebook's cells, as
  ``grading.scoring`` combines them).

They must agree on every answer, and for visible checks the grader's message must be the learner's
message. The batteries, by kind of answer:

* tensors, numbers, plain values and lists of them: the other float dtype, NumPy arrays and scalars, Python
  numbers, lists and tuples, non-contiguous views, tensors requiring grad or attached to a graph,
  ``nn.Parameter``, 0-d vs 1-element, NaN, inf, a wrong value, transposed, meta and sparse tensors, ...;
* gradients (``check_grad``) and gradient functions (``check_grad_fn``): the same, applied to ``.grad`` or to
  what the function returns, plus a function that raises;
* modules (``check_module``) and prescribed networks' weights: other dtypes, wrong layers, meta, broken;
* designed networks (``check_classifier``, records of kind ``classifier``): the model or its recorded
  description with other dtypes, NaN weights, untrained weights, over the parameter budget, a layer the
  grader cannot rebuild, nested, subclassed, meta, missing weights, ...;
* constrained functions (records of kind ``constraint``): the answer cell as written (compliant) and
  rewritten to break the constraint (a forbidden call, ``@``, an import, a name from another cell, an escape
  hatch, a private attribute, a ``global``, a lambda instead of a ``def``, a required helper left unused, a
  tensor that requires gradients), and every answer of ``samples.BYPASSES`` (ways around a constraint, which
  both sides must deny) and ``samples.ACCEPTED`` (legitimate answers, which both must accept) for that task.
  The trusted side runs as the task's own grading job does: the answer cell alone, then the test call.

A variant that does not apply to an answer (NumPy for a ragged list, a transpose of a 1-D tensor, ``@`` for a
rule that is not about matrix products...) is *not applicable*: skipped and counted, never a crash.
``python tests/e2e/test_check_agreement.py`` prints the agreement table (tasks x answers).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import io
import linecache
import os
import re
import subprocess
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from course_utils import checks, constraints
from course_utils.compare import answer, judge
from course_utils.constraint_rules import defining_cells
from course_utils.grading.authoring.samples import ACCEPTED, BYPASSES, KERNEL_ATTACKS
from course_utils.grading.cells import grade_id as cell_grade_id
from course_utils.grading.course import working_folder
from course_utils.grading.pipeline import references
from course_utils.grading.pipeline.constraints import answer_problems
from course_utils.grading.pipeline.verdicts import compare_records
from course_utils.grading.runner.sandbox import JobLimits
from course_utils.networks import build_sequential, count_parameters, describe_layer
from course_utils.records import load_record_bytes, load_records
from support import REPO

REPO = REPO
NOTEBOOKS = sorted((REPO / "solutions").glob("*/*.ipynb"))
RECORD_CAP = JobLimits().record_bytes


def read_back(record_file: Path) -> dict:
    """A kernel's record file as the grader reads it (size, depth and layout checked, weights only)."""
    return load_record_bytes(record_file.read_bytes(), RECORD_CAP) if record_file.exists() else {}


KEYED_CHECKS = ("check_tensor", "check_scalar", "check_grad", "check_grad_fn", "check_module", "check_classifier")


@dataclass
class Call:
    """One keyed check or ``record`` call of a solution notebook, with its arguments."""

    notebook: str
    function: str
    args: tuple
    kwargs: dict
    key: str = ""

    @property
    def task(self) -> str:
        return self.key.split("/")[0]

    @property
    def kind(self) -> str:
        return self.kwargs.get("kind", "tensor") if self.function == "record" else self.function


@dataclass
class Constrained:
    """One ``constrained(fn, *rules, key=..., uses=..., require=...)`` call, and the first call of what it returned."""

    function: str
    rules: tuple
    uses: dict  # name -> the course's version the test cell provides
    require: list
    first_call: tuple | None = None  # (args, kwargs)


@dataclass
class Run:
    """A solution notebook run once: its captured calls, reference records, final namespace and code cells."""

    notebook: str
    calls: list
    reference: dict
    namespace: dict
    sources: list
    constrained: dict  # key -> Constrained


@dataclass
class Outcome:
    task: str
    key: str
    variant: str
    visible: tuple  # (passed, message)
    trusted: tuple  # (passed, message)
    problems: list = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return self.visible[0] == self.trusted[0] and not self.problems


class NotApplicable:
    """A variant that does not apply to this answer (e.g. NumPy for a ragged list): skipped, and counted."""

    def __init__(self, why: str):
        self.why = why

    def __repr__(self):
        return f"NotApplicable({self.why!r})"


def _snapshot(value):
    """A copy that later steps of the notebook cannot change (values computed from a graph stay as they are)."""
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def _register(filename: str, source: str) -> str:
    """Make ``source`` readable through ``linecache`` under ``filename``, as IPython does for each cell."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return filename


def run_solution(path: Path, record_file: Path) -> Run:
    """Execute the notebook's code cells here, in order, as its kernel would; return what it did."""
    calls, constrained_calls = [], {}
    originals = {name: getattr(checks, name) for name in (*KEYED_CHECKS, "record")}
    original_constrained = constraints.constrained

    def spy(name):
        def wrapper(*args, **kwargs):
            key = args[0] if name == "record" else kwargs.get("key")
            if key is not None:
                calls.append(Call(path.stem, name, _snapshot(args), _snapshot(kwargs), key))
            return originals[name](*args, **kwargs)

        return wrapper

    def constrained_spy(fn, *rules, key=None, uses=None, require=()):
        safe = original_constrained(fn, *rules, key=key, uses=uses, require=require)
        entry = Constrained(fn.__name__, rules, dict(uses or {}), list(require))
        if key is not None:
            constrained_calls[key] = entry

        @functools.wraps(safe)
        def first_call(*args, **kwargs):
            if entry.first_call is None:
                entry.first_call = (_snapshot(args), _snapshot(kwargs))
            return safe(*args, **kwargs)

        return first_call

    nb = nbformat.read(path, as_version=4)
    namespace = {"__name__": "__main__"}
    saved = os.environ.get(checks.RECORD_ENV)
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    try:
        for name in originals:
            setattr(checks, name, spy(name))
        constraints.constrained = constrained_spy
        os.environ[checks.RECORD_ENV] = str(record_file)
        with working_folder(path.parent), contextlib.redirect_stdout(io.StringIO()):
            for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
                filename = _register(f"<{path.stem} cell {i}: {cell_grade_id(cell) or 'code'}>", cell.source)
                exec(compile(cell.source, filename, "exec"), namespace)
    finally:
        for name, function in originals.items():
            setattr(checks, name, function)
        constraints.constrained = original_constrained
        if saved is None:
            os.environ.pop(checks.RECORD_ENV, None)
        else:
            os.environ[checks.RECORD_ENV] = saved
    return Run(path.stem, calls, load_records(record_file), namespace, sources, constrained_calls)


# ---------------------------------------------------------------- the battery of answers


def _noncontiguous(t: torch.Tensor) -> torch.Tensor:
    return torch.stack([t.detach(), t.detach()], dim=-1)[..., 0]


def _poke(t: torch.Tensor, value) -> torch.Tensor:
    out = t.detach().clone(memory_format=torch.contiguous_format)
    out.view(-1)[0] = value
    return out


def _numpy_array(x):
    """``np.array(x)``, or not applicable when NumPy cannot make one array of it (ragged, or graph-attached)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.array(x)
        except (ValueError, TypeError, RuntimeError) as error:
            return NotApplicable(f"NumPy cannot make an array of it ({type(error).__name__})")


def _deep_tuple(x):
    return tuple(_deep_tuple(v) for v in x) if isinstance(x, list) else x


def tensor_variants(t: torch.Tensor) -> dict:
    t = t.detach()
    na = NotApplicable
    out = {"as is": t, "non-contiguous": _noncontiguous(t), "list": t.tolist(), "meta": t.to("meta")}
    if t.dtype in (torch.float32, torch.float64):
        out["other float dtype"] = t.double() if t.dtype == torch.float32 else t.float()
    elif t.dtype != torch.bool:
        out["other float dtype"] = t.float()
    else:
        out["other float dtype"] = na("a bool tensor has no float dtype")
    out["NumPy array"] = t.numpy() if t.dtype != torch.bfloat16 else na("NumPy has no bfloat16")
    out["NumPy scalar"] = (
        t.numpy().reshape(-1)[0] if t.numel() == 1 and t.dtype != torch.bfloat16 else na("more than one element")
    )
    out["Python number"] = t.item() if t.numel() == 1 else na("more than one element")
    if t.numel() == 1:
        out["0-d / 1-element"] = t.reshape(1) if t.dim() == 0 else t.reshape(())
    else:
        out["0-d / 1-element"] = t.unsqueeze(0)
    float_only = na("not a floating-point tensor")
    out["requires grad"] = t.clone().requires_grad_() if t.is_floating_point() else float_only
    out["attached"] = t.clone().requires_grad_() * 1 if t.is_floating_point() else float_only
    out["nn.Parameter"] = nn.Parameter(t.clone()) if t.is_floating_point() else float_only
    out["NaN"] = _poke(t, float("nan")) if t.is_floating_point() and t.numel() else float_only
    out["inf"] = _poke(t, float("inf")) if t.is_floating_point() and t.numel() else float_only
    if t.numel():
        first = t.reshape(-1)[0]
        out["wrong value"] = _poke(t, ~first if t.dtype == torch.bool else first + 1)
    else:
        out["wrong value"] = torch.zeros((1, *t.shape[1:]), dtype=t.dtype)
    out["transposed"] = t.T if t.dim() == 2 else na("not a matrix")
    out["sparse"] = t.to_sparse() if t.dim() >= 1 else na("a 0-d tensor has no sparse form")
    return out


def number_variants(x) -> dict:
    out = {
        "as is": x,
        "NumPy scalar": np.float32(x),
        "NumPy array": np.array([x]),
        "list": [x],
        "0-d / 1-element": torch.tensor(x),
        "other float dtype": torch.tensor([x], dtype=torch.float64),
        "requires grad": torch.tensor(float(x), requires_grad=True),
        "attached": torch.tensor(float(x), requires_grad=True) * 1,
        "non-contiguous": _noncontiguous(torch.tensor([x])),
        "NaN": float("nan"),
        "inf": float("inf"),
        "wrong value": x * 2 + 1,
        "meta": torch.tensor(x, device="meta"),
        "other": str(x),
        "2 elements": torch.tensor([x, x]),
    }
    if isinstance(x, int):
        out["Python number"] = float(x)
        out["NumPy scalar"] = np.int64(x)
    return out


def plain_variants(x) -> dict:
    """Answers for a plain value (bool, str, int, float, a list of them, nested or ragged)."""
    na = NotApplicable
    out = {
        "as is": x,
        "wrong value": (not x) if isinstance(x, bool) else f"{x}!" if isinstance(x, str) else None,
        "other": None,
    }
    if isinstance(x, bool):
        out.update(
            {
                "NumPy scalar": np.bool_(x),
                "Python number": int(x),
                "0-d / 1-element": torch.tensor(x),
                "NumPy array": np.array([x]),
                "list": [x],
            }
        )
    elif isinstance(x, str):
        out.update(
            {
                "NumPy scalar": np.str_(x),
                "list": [x],
                "NumPy array": np.array([x]),
                "Python number": len(x),
                "tuple": (x,),
            }
        )
    elif isinstance(x, int):
        out.update(
            {
                "NumPy scalar": np.int64(x),
                "Python number": float(x),
                "0-d / 1-element": torch.tensor(x),
                "NumPy array": np.array([x]),
                "list": [x],
            }
        )
    elif isinstance(x, list):
        scalar_first = bool(x) and type(x[0]) in (bool, int, float)
        out.update(
            {
                "tuple": _deep_tuple(x),
                "wrong value": x[:-1] if x else [0],
                "NumPy array": _numpy_array(x),
                "list": [x],
                "Python number": len(x),
                "NumPy scalar": [np.array(x[0])[()], *x[1:]] if scalar_first else na("the first item is no number"),
                "2 elements": x + x[-1:] if x else [0, 0],
            }
        )
    return out


def list_variants(items: list) -> dict:
    out = {"as is": list(items), "tuple": tuple(items), "wrong value": list(items)[:-1], "other": items[0]}
    first = value_variants(items[0])
    for name, variant in first.items():
        if name not in ("as is", "wrong value"):
            out[name] = variant if isinstance(variant, NotApplicable) else [variant, *items[1:]]
    out["wrong value"] = [first["wrong value"], *items[1:]]
    return out


def value_variants(value) -> dict:
    if isinstance(value, torch.Tensor):
        return tensor_variants(value)
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, torch.Tensor) for v in value):
        return list_variants(list(value))
    if type(value) in (int, float):
        return number_variants(value)
    return plain_variants(value)


def leaf_variants(leaf: torch.Tensor) -> dict:
    """Answers for check_grad: leaf tensors whose .grad varies."""

    def leaf_with(grad, dtype=None):
        x = leaf.detach().clone().to(dtype or leaf.dtype).requires_grad_()
        x.grad = grad
        return x

    grad = leaf.grad
    other = torch.float64 if leaf.dtype == torch.float32 else torch.float32
    return {
        "as is": leaf,
        "other float dtype": leaf_with(grad.to(other), other),
        "NumPy array": leaf.detach().numpy(),
        "list": leaf.detach().tolist(),
        "requires grad": leaf.detach().clone().requires_grad_(),
        "attached": leaf.detach().clone().requires_grad_() * 1,
        "other": leaf.detach().clone(),
        "non-contiguous": leaf_with(_noncontiguous(grad)),
        "NaN": leaf_with(_poke(grad, float("nan"))),
        "inf": leaf_with(_poke(grad, float("inf"))),
        "wrong value": leaf_with(_poke(grad, grad.reshape(-1)[0] + 1)),
        "meta": leaf.detach().to("meta"),
    }


def grad_fn_variants(grad_fn) -> dict:
    """Answers for check_grad_fn: functions whose outputs vary."""

    def returning(transform):
        return lambda *inputs: transform(grad_fn(*inputs))

    def boom(*inputs):
        raise ValueError("a bug in the learner's function")

    out = {"raises": boom, "other": lambda *inputs: None}
    for name in (
        "as is",
        "other float dtype",
        "NumPy array",
        "list",
        "non-contiguous",
        "requires grad",
        "attached",
        "0-d / 1-element",
        "NaN",
        "inf",
        "wrong value",
        "meta",
        "sparse",
        "tuple",
    ):

        def transform(g, name=name):
            if name == "tuple":
                return (g,) if isinstance(g, torch.Tensor) else tuple(g)
            if not isinstance(g, torch.Tensor):
                return g
            variant = tensor_variants(g)[name]
            return None if isinstance(variant, NotApplicable) else variant

        out[name] = returning(transform)
    return out


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        raise RuntimeError("a bug in forward")


def module_variants(module: nn.Module) -> dict:
    return {
        "as is": module,
        "other float dtype": copy.deepcopy(module).double(),
        "other": type(module),
        "wrong value": nn.Sequential(copy.deepcopy(module), nn.ReLU()),
        "list": [module],
        "meta": copy.deepcopy(module).to("meta"),
        "raises": Broken(),
        "NaN": None,
    }


def state_dict_variants(state: dict) -> dict:
    """Answers for a prescribed network's record (its state_dict)."""
    first = next(iter(state))
    return {
        "as is": state,
        "other float dtype": {k: v.double() for k, v in state.items()},
        "requires grad": {k: nn.Parameter(v.clone()) for k, v in state.items()},
        "non-contiguous": {k: _noncontiguous(v) for k, v in state.items()},
        "NaN": {k: _poke(v, float("nan")) if k == first else v for k, v in state.items()},
        "wrong value": {k: torch.zeros_like(v) for k, v in state.items()},
        "NumPy array": {k: v.numpy() for k, v in state.items()},
        "meta": {k: v.to("meta") for k, v in state.items()},
        "other": {k: v for k, v in state.items() if k != first},
    }


# ---------------------------------------------------------------- designed networks


def _budget_breaker(n_params: int, max_params) -> list | NotApplicable:
    """Two Linear(10, k), Linear(k, 10) layers that take a network of ``n_params`` over ``max_params``."""
    if max_params is None:
        return NotApplicable("the task sets no parameter budget")
    k = max(1, (int(max_params) - n_params) // 20 + 1)
    return [nn.Linear(10, k), nn.Linear(k, 10)]


def design_variants(design: dict, params: dict) -> dict:
    """Answers for a recorded design (``describe_sequential(model)``: the layer list and the weights)."""
    layers, state = design["layers"], design["state_dict"]
    floats = {k: v for k, v in state.items() if v.is_floating_point()}
    first = next(iter(floats))

    def weights(transform, only_first=False):
        return {
            "layers": layers,
            "state_dict": {
                k: transform(v) if k in floats and (k == first or not only_first) else v for k, v in state.items()
            },
        }

    extra = _budget_breaker(count_parameters(build_sequential(layers, device="meta")), params.get("max_params"))
    if isinstance(extra, NotApplicable):
        over_budget = extra
    else:
        grown = nn.Sequential(*build_sequential(layers), *extra)
        grown.load_state_dict(
            {
                **state,
                **{f"{len(layers) + i}.{k}": v for i, layer in enumerate(extra) for k, v in layer.state_dict().items()},
            }
        )
        over_budget = {
            "layers": [*layers, *(describe_layer(layer) for layer in extra)],
            "state_dict": grown.state_dict(),
        }
    return {
        "as is": design,
        "other float dtype": weights(lambda v: v.double()),
        "requires grad": weights(lambda v: nn.Parameter(v.clone())),
        "non-contiguous": weights(_noncontiguous),
        "NumPy array": weights(lambda v: v.numpy()),
        "meta": weights(lambda v: v.to("meta")),
        "sparse": weights(lambda v: v.to_sparse(), only_first=True),
        "NaN": weights(lambda v: _poke(v, float("nan")), only_first=True),
        "inf": weights(lambda v: _poke(v, float("inf")), only_first=True),
        "wrong value": weights(torch.zeros_like),
        "transposed": (
            weights(lambda v: v.T, only_first=True)
            if floats[first].dim() == 2 and floats[first].shape[0] != floats[first].shape[1]
            else NotApplicable("not a matrix")
        ),
        "tuple": {"layers": _deep_tuple(layers), "state_dict": state},
        "list": [design],
        "other": {"layers": layers, "state_dict": {k: v for k, v in state.items() if k != first}},
        "over budget": over_budget,
        "unknown layer": {"layers": [*layers, ["Softmax", {"dim": 1}]], "state_dict": state},
    }


def network_variants(model: nn.Sequential, kwargs: dict) -> dict:
    """Answers for check_classifier: the learner's network, varied."""

    def changed(transform):
        twin = copy.deepcopy(model)
        with torch.no_grad():
            transform(twin)
        return twin

    def untrained(twin):
        torch.manual_seed(1)
        for layer in twin:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def nan(twin):
        next(twin.parameters()).view(-1)[0] = float("nan")

    extra = _budget_breaker(count_parameters(model), kwargs.get("max_params"))
    subclass = type("MySequential", (nn.Sequential,), {})
    return {
        "as is": model,
        "other float dtype": copy.deepcopy(model).double(),
        "wrong value": changed(untrained),
        "NaN": changed(nan),
        "meta": copy.deepcopy(model).to("meta"),
        "over budget": extra if isinstance(extra, NotApplicable) else nn.Sequential(*copy.deepcopy(model), *extra),
        "unknown layer": nn.Sequential(*copy.deepcopy(model), nn.Softmax(dim=1)),
        "subclass": subclass(*copy.deepcopy(model)),
        "other": nn.Sequential(copy.deepcopy(model)),
        "list": [model],
        "raises": Broken(),
        "state_dict": model.state_dict(),
    }


# ---------------------------------------------------------------- constrained functions


#: for each rule, an expression its static check forbids
FORBIDDEN = {
    "matmul": "torch.matmul",
    "sigmoid": "torch.sigmoid",
    "autograd": "torch.autograd.grad",
    "convolution": "F.conv2d",
    "loss_functions": "F.mse_loss",
}


@dataclass
class CellVariant:
    """The constrained function's answer cell as a learner might write it, with cells it needs placed before it."""

    source: str
    before: tuple = ()


def _with_first_line(source: str, function: str, line: str) -> str:
    """``source`` with ``line`` as the first statement of the top-level ``def function``."""
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function)
    body = node.body[0]
    lines = source.splitlines(True)
    lines.insert(body.lineno - 1, " " * body.col_offset + line + "\n")
    return "".join(lines)


def constraint_variants(run: Run, call: Call) -> dict:
    """Answer cells for a constrained task: the solution's (compliant), and rewritten to break the constraint."""
    entry = run.constrained[call.key]
    index = defining_cells(run.sources, entry.function)[0]
    source, name = run.sources[index], entry.function
    na = NotApplicable

    def first(line):
        return CellVariant(_with_first_line(source, name, line))

    forbidden = next((FORBIDDEN[r] for r in entry.rules if r in FORBIDDEN), None)
    out = {
        "as is": CellVariant(source),
        "forbidden call": first(f"_unused = {forbidden}") if forbidden else na("the rule forbids no library call"),
        "`@`": first("_unused = (lambda a, b: a @ b)") if "matmul" in entry.rules else na("not a matrix-product rule"),
        "import": first("import numpy"),  # torch, math, nn and F may be imported in the cell itself
        "outside name": CellVariant(
            _with_first_line(source, name, "_unused = helper_from_another_cell"), ("helper_from_another_cell = None\n",)
        ),
        "escape hatch": first("_unused = getattr(torch, 'ones')"),
        "private attribute": first("_unused = torch._C"),
        "global": first("global _counter"),
        "lambda": CellVariant(f"{name} = lambda *args, **kwargs: None\n"),
        "requires_grad=True": (
            first("_unused = torch.ones(1, requires_grad=True)")
            if "autograd" in entry.rules
            else na("not an autograd rule")
        ),
    }
    for name, (task, kwargs) in {**BYPASSES, **ACCEPTED}.items():
        answer = kwargs.get("answer")
        if task == call.task and name not in KERNEL_ATTACKS and answer and f"def {entry.function}(" in answer:
            kind = "bypass" if name in BYPASSES else "accepted"
            out[f"{kind} {name}"] = CellVariant(answer, tuple(kwargs.get("extra_cells", ())))
    if entry.require:
        helper = entry.require[0]
        own = f"_own_{helper}"
        helper_source = run.sources[defining_cells(run.sources, helper)[0]]
        renamed = (
            re.sub(rf"\b{helper}\b", own, source) + "\n\n" + re.sub(rf"\bdef {helper}\b", f"def {own}", helper_source)
        )
        out["required helper unused"] = CellVariant(renamed)
    else:
        out["required helper unused"] = na("the task requires no helper")
    return out


# ---------------------------------------------------------------- the two verdicts


def _verdict(function, *args, **kwargs) -> tuple[bool, str]:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            function(*args, **kwargs)
        return True, ""
    except checks.CheckFailure as failure:
        return False, str(failure)


def _hidden_visible(call: Call, ref: dict, variant) -> tuple[bool, str]:
    """What a learner-side check would say about ``variant`` with the reference as the expected value."""
    kind, expected, params = ref["kind"], ref["value"], ref["params"]
    rule = {k: params[k] for k in ("rtol", "atol", "equal_nan", "check_dtype") if k in params}
    if kind == "tensor" and isinstance(expected, torch.Tensor):
        return _verdict(checks.check_tensor, variant, expected, **rule)
    if kind == "scalar":
        return _verdict(checks.check_scalar, variant, expected, **{k: v for k, v in rule.items() if k != "check_dtype"})
    if kind == "classifier":
        rule = {k: v for k, v in params.items() if k != "visible"}
    value = answer(kind, variant) if kind in ("module", "grad", "grad_fn") else variant
    problem = judge(kind, value, expected, reveal=True, **rule)
    return problem is None, problem or ""


def _reset_recording(record_file: Path) -> None:
    """A fresh record file for one answer (the checks keep what they recorded in memory, per file)."""
    record_file.unlink(missing_ok=True)
    checks._RECORDS.clear()
    checks._RECORD_PATH[0] = None
    os.environ[checks.RECORD_ENV] = str(record_file)


def _outcome(
    call: Call,
    ref: dict,
    variant_name: str,
    visible: tuple,
    record_file: Path,
    problems: list,
    static: str | None = None,
) -> Outcome:
    verdict = compare_records(read_back(record_file), {call.key: ref})[call.task]
    trusted = (
        verdict.passed and static is None,
        verdict.message + (f"\n- constraint check failed: {static}" if static else ""),
    )
    if "could not be compared" in verdict.message:
        problems.append("the grader could not compare the record")
    if ref["params"].get("visible") and visible[0] is False and visible[1] not in trusted[1]:
        problems.append("the grader's message is not the learner's")
    if any(internal in trusted[1] for internal in ("__what__", "__problem__", "__unsupported__", "{name}")):
        problems.append("the grader's message shows internals")
    return Outcome(call.task, call.key, variant_name, visible, trusted, problems)


def evaluate(call: Call, reference: dict, variant_name: str, variant, tmp: Path) -> Outcome:
    """The two verdicts on one answer to a keyed check or a ``record`` call."""
    record_file = tmp / "student.pt"
    ref = reference[call.key]
    problems = []
    _reset_recording(record_file)
    try:
        if call.function == "record":
            checks.record(call.key, variant, **call.kwargs)
            visible = _hidden_visible(call, ref, variant)
        else:
            args = (variant, *call.args[1:]) if call.args else ()
            kwargs = dict(call.kwargs) if call.args else {**call.kwargs, "module": variant}
            visible = _verdict(getattr(checks, call.function), *args, **kwargs)
    except Exception as error:  # a crash is a disagreement by definition
        visible = (None, f"{type(error).__name__}: {error}")
        problems.append(f"the learner's side raised {type(error).__name__}: {error}")
    finally:
        os.environ.pop(checks.RECORD_ENV, None)
    return _outcome(call, ref, variant_name, visible, record_file, problems)


def _constrained_verdict(namespace: dict, cells, entry: Constrained, call: Call, tag: str) -> tuple[bool, str]:
    """Run ``cells`` in ``namespace``, then the test cell's ``constrained(...)`` and its first call of the function."""
    with contextlib.redirect_stdout(io.StringIO()):
        for i, source in enumerate(cells):
            filename = _register(f"<{tag} {i}>", source)
            exec(compile(source, filename, "exec"), namespace)
        function = namespace[entry.function]
        try:
            safe = constraints.constrained(function, *entry.rules, key=call.key, uses=entry.uses, require=entry.require)
            if entry.first_call is not None:
                args, kwargs = _snapshot(entry.first_call)
                safe(*args, **kwargs)
            return True, ""
        except checks.CheckFailure as failure:
            return False, str(failure)


def evaluate_constraint(run: Run, call: Call, variant_name: str, variant: CellVariant, tmp: Path) -> Outcome:
    """The two verdicts on one way of writing a constrained function's answer cell.

    Visible: the cells it needs and the answer cell run in (a copy of) the notebook's namespace, then the test
    cell's ``constrained(...)`` and its first call of the function, as in the learner's kernel. Trusted: as the
    task's own job runs it, the answer cell alone (in a copy of the namespace without the cells before it) with
    the same test call, its record compared with the reference, together with the grader's static check of the
    answer cell (``grading.constraints``), as ``grading.scoring`` combines them.
    """
    entry, ref = run.constrained[call.key], run.reference[call.key]
    record_file, problems = tmp / "student.pt", []
    tag = f"{run.notebook} {call.key} {variant_name}"
    _reset_recording(record_file)
    try:
        visible = _constrained_verdict(dict(run.namespace), [*variant.before, variant.source], entry, call, tag)
    except Exception as error:
        visible = (None, f"{type(error).__name__}: {error}")
        problems.append(f"the learner's side raised {type(error).__name__}: {error}")
    _reset_recording(record_file)
    try:
        namespace = {k: v for k, v in run.namespace.items() if k != entry.function}
        _constrained_verdict(namespace, [variant.source], entry, call, tag + " (task job)")
    except Exception:  # the task's job stops here too: its record says what it saw, if anything
        pass
    finally:
        os.environ.pop(checks.RECORD_ENV, None)
    static = answer_problems(variant.source, {call.key: ref}).get(call.key)
    return _outcome(call, ref, variant_name, visible, record_file, problems, static)


def battery(run: Run, call: Call) -> dict:
    """Every answer for ``call``, by name (a NotApplicable where the variant does not apply)."""
    if call.function == "record":
        subject = call.args[1]
        kind = call.kwargs.get("kind", "tensor")
        if kind == "constraint":
            return constraint_variants(run, call)
        if kind == "classifier":
            if isinstance(subject, dict) and set(subject) == {"layers", "state_dict"}:
                return design_variants(subject, call.kwargs)
            return state_dict_variants(subject)
        if kind == "module":
            return module_variants(subject)
        return value_variants(subject)
    subject = call.args[0] if call.args else call.kwargs.get("module")
    if call.function == "check_grad":
        return leaf_variants(subject)
    if call.function == "check_grad_fn":
        return grad_fn_variants(subject)
    if call.function == "check_module":
        return module_variants(subject)
    if call.function == "check_classifier":
        return network_variants(subject, call.kwargs)
    return value_variants(subject)


def applicable(variants: dict) -> dict:
    return {name: v for name, v in variants.items() if not isinstance(v, NotApplicable)}


def outcomes_of(run: Run, tmp: Path) -> tuple[list[Outcome], list[tuple]]:
    """Every answer's outcome, and the variants that did not apply as (task, key, variant, why)."""
    outcomes, skipped = [], []
    for call in run.calls:
        for name, variant in battery(run, call).items():
            if isinstance(variant, NotApplicable):
                skipped.append((call.task, call.key, name, variant.why))
            elif call.kind == "constraint":
                outcomes.append(evaluate_constraint(run, call, name, variant, tmp))
            else:
                outcomes.append(evaluate(call, run.reference, name, variant, tmp))
    return outcomes, skipped


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Each solution notebook run once: {notebook: Run}."""
    torch_state = torch.get_rng_state()
    out = {}
    for path in NOTEBOOKS:
        out[path.stem] = run_solution(path, tmp_path_factory.mktemp(path.stem) / "reference.pt")
    torch.set_rng_state(torch_state)
    return out


# ---------------------------------------------------------------- the specification


def test_every_graded_task_is_covered_by_captured_calls(runs):
    for notebook, run in runs.items():
        assert {c.key for c in run.calls} == set(run.reference), (
            f"{notebook}: a record was made outside a captured call"
        )
        graded = {
            cell_grade_id(c)
            for c in nbformat.read(
                REPO / "solutions" / notebook.removesuffix("_exercises") / f"{notebook}.ipynb", as_version=4
            ).cells
            if c.metadata.get("nbgrader", {}).get("grade")
        }
        assert {c.task for c in run.calls} == graded, f"{notebook}: graded tasks without a captured call"
        for call in run.calls:
            assert len(applicable(battery(run, call))) >= 7, f"{call.key}: too few answer variants"
        assert {c.key for c in run.calls if c.kind == "constraint"} == set(run.constrained), (
            f"{notebook}: a constraint record without its constrained(...) call"
        )


@pytest.fixture(scope="module")
def judged(runs, tmp_path_factory):
    """Each notebook's outcomes and skipped variants, computed once (on first use) for all tests here."""
    cache = {}

    def get(notebook: str) -> tuple[list[Outcome], list[tuple]]:
        if notebook not in cache:
            cache[notebook] = outcomes_of(runs[notebook], tmp_path_factory.mktemp("answers"))
        return cache[notebook]

    return get


@pytest.mark.parametrize("notebook", [p.stem for p in NOTEBOOKS])
def test_visible_and_trusted_verdicts_agree_on_every_answer(judged, notebook):
    outcomes, _ = judged(notebook)
    same = [o for o in outcomes if o.variant == "as is"]
    assert all(o.visible[0] and o.trusted[0] for o in same), [(o.key, o.trusted[1]) for o in same if not o.trusted[0]]
    assert any(not o.visible[0] for o in outcomes), "the battery must contain failing answers"
    disagreements = [
        f"{o.key} [{o.variant}]: notebook {o.visible}, grader {o.trusted} {o.problems}" for o in outcomes if not o.agree
    ]
    assert not disagreements, "\n".join(disagreements)


def test_constraint_and_network_batteries_hold_passing_and_failing_answers(runs, judged):
    """Each constrained task and each designed network is judged on compliant and violating answers alike."""
    checked = defaultdict(int)
    for notebook, run in runs.items():
        outcomes, _ = judged(notebook)
        for call in run.calls:
            if call.kind not in ("constraint", "classifier", "check_classifier"):
                continue
            mine = [o for o in outcomes if o.key == call.key]
            passed = sum(bool(o.visible[0]) for o in mine)
            assert 0 < passed < len(mine), (call.key, [(o.variant, o.visible) for o in mine])
            checked[call.kind] += 1
    assert checked["constraint"] >= 15 and checked["classifier"] >= 4 and checked["check_classifier"] >= 2, checked


def test_every_bypass_is_caught_and_every_legitimate_answer_accepted_on_both_sides(runs, judged):
    """samples.BYPASSES (but the attacks on the kernel's own check) and samples.ACCEPTED, each answer cell put in
    place of the solution's: the test cell and the grade deny every bypass and accept every legitimate answer."""
    tried = defaultdict(set)
    for notebook in runs:
        outcomes, _ = judged(notebook)
        for o in outcomes:
            kind = column(o.variant)
            if kind in ("bypass", "accepted"):
                tried[kind].add(o.variant)
                assert bool(o.visible[0]) == bool(o.trusted[0]) == (kind == "accepted"), (
                    o.key,
                    o.variant,
                    o.visible,
                    o.trusted,
                )
    assert {v.split(" ", 1)[1] for v in tried["bypass"]} == set(BYPASSES) - KERNEL_ATTACKS
    assert {v.split(" ", 1)[1] for v in tried["accepted"]} == set(ACCEPTED)


def test_a_visible_check_without_a_key_can_only_fail_the_grade_too():
    """Checks without a key (``raise CheckFailure``, ``check_at_least``) record nothing, so the battery above
    cannot judge them. They agree with the grade only because a failure stops the test cell before its hidden
    records, and a task with a record missing fails: so every test cell ends with its hidden block, which
    records something. (What an unkeyed check accepts, the grade must check with a key: see ex07's and ex08's
    check_classifier, where a validation-accuracy check once stood for the grader's test accuracy.)"""
    from course_utils.grading.course import Course

    markers = Course.load(REPO).markers
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if not cell.metadata.get("nbgrader", {}).get("grade"):
                continue
            last = cell.source.rstrip().splitlines()[-1]
            assert markers.end in last and cell.source.count(markers.begin) == 1, cell_grade_id(cell)
            assert "record(" in markers.split(cell.source)[1], cell_grade_id(cell)
            assert "check_at_least(" not in markers.split(cell.source)[0], (
                f"{cell_grade_id(cell)}: check_at_least records nothing: use a keyed check of what the grader checks"
            )


def test_the_reference_key_covers_every_course_module_a_solution_notebook_imports():
    """References are cached by a key over the top-level course_utils modules: a solution must not import
    anything of course_utils beyond them (the learner side never imports the grader)."""
    imported = set()
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            imported |= set(re.findall(r"^\s*(?:from|import)\s+(course_utils(?:\.\w+)*)", cell.source, re.M))
    code = (
        f"import sys, {', '.join(sorted(imported))}; "
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('course_utils')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    keyed = {str(p) for p in references.PACKAGE_ROOT.glob("*.py")}
    assert {"course_utils.checks", "course_utils.data"} <= imported
    assert set(loaded) <= keyed, set(loaded) - keyed


# ---------------------------------------------------------------- any input at all (hypothesis)


class Hostile:
    """A value whose every dunder method fails."""

    def __repr__(self):
        raise RuntimeError("repr")

    def __len__(self):
        raise RuntimeError("len")

    def __iter__(self):
        raise RuntimeError("iter")

    def __float__(self):
        raise RuntimeError("float")

    @property
    def shape(self):
        raise RuntimeError("shape")


class Prickly(torch.Tensor):
    """A tensor subclass that refuses every torch operation."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError("no")


def _prickly():
    with torch._C.DisableTorchFunctionSubclass():
        return torch.ones(2).as_subclass(Prickly)


def _tensors():
    dtypes = [
        torch.bool,
        torch.uint8,
        torch.int64,
        torch.uint64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.complex64,
        torch.float8_e4m3fn,
        torch.uint16,
        torch.complex128,
    ]
    shape = st.lists(st.integers(0, 3), max_size=2).map(tuple)
    special = st.sampled_from([float("nan"), float("inf"), 0.5, -1.0, 1.0])

    def build(dtype, shape, fill, form):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = torch.full(shape, fill).to(dtype)
            try:
                return shaped(t, form)
            except (NotImplementedError, RuntimeError):  # torch cannot make that form of this dtype
                return t

    def shaped(t, form):
        if form == "requires grad" and t.is_floating_point():
            return t.requires_grad_()
        if form == "attached" and t.is_floating_point():
            return t.requires_grad_() * 1
        if form == "meta":
            return t.to("meta")
        if form == "sparse" and t.dim():
            return t.to_sparse()
        if form == "strided" and t.dim():
            return torch.stack([t, t], -1)[..., 0]
        return t

    forms = st.sampled_from(["plain", "requires grad", "attached", "meta", "sparse", "strided"])
    return st.builds(build, st.sampled_from(dtypes), shape, special, forms)


def _deep(levels: int) -> list:
    value = [1.0]
    for _ in range(levels):
        value = [value]
    return value


def _numpy():
    return st.one_of(
        st.builds(np.float32, st.floats(width=32)),
        st.builds(np.int64, st.integers(-5, 5)),
        st.builds(np.bool_, st.booleans()),
        st.builds(np.str_, st.text(max_size=3)),
        st.builds(lambda n: np.ones(n), st.integers(0, 3)),
        st.builds(lambda n: np.array(["a"] * n, dtype=object), st.integers(1, 2)),
    )


ANYTHING = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.complex_numbers(),
        st.text(max_size=4),
        st.binary(max_size=4),
        _tensors(),
        _numpy(),
        st.sampled_from(
            [
                "nn.Linear",
                "nn.Sequential",
                "class",
                "function",
                "hostile",
                "prickly",
                "generator",
                "size",
                "object",
                "module",
                "broken module",
                "deep",
                "huge",
            ]
        ).map(
            lambda name: {
                "nn.Linear": lambda: nn.Linear(2, 1),
                "nn.Sequential": nn.Sequential,
                "class": lambda: nn.Linear,
                "function": lambda: torch.ones,
                "hostile": Hostile,
                "prickly": _prickly,
                "generator": lambda: (i for i in range(2)),
                "size": lambda: torch.Size([2]),
                "object": object,
                "module": lambda: torch,
                "broken module": Broken,
                "deep": lambda: _deep(30),
                "huge": lambda: list(range(20_000)),
            }[name]()
        ),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=3), children, max_size=3),
    ),
    max_leaves=6,
)

#: (check, extra arguments, the solution's answer): every keyed check, once per fuzzed value
FUZZED_CHECKS = {
    "check_tensor": ((torch.ones(2),), torch.ones(2)),
    "check_scalar": ((1.0,), 1.0),
    "check_grad": (([1.0, 1.0],), None),
    "check_grad_fn": ((lambda x: (x**2).sum() / 2, (torch.ones(2),)), None),
    "check_module": ((), nn.Linear(2, 1)),
    "check_classifier": ((), nn.Sequential(nn.Flatten(), nn.Linear(784, 10))),
}
MODULE_RULE = dict(layer_types=["Linear"], n_params=3, sample_input=torch.ones(1, 2), output_shape=(1, 1))
NETWORK_RULE = dict(max_params=8000, input_shape=(28, 28))


def _solution_leaf():
    x = torch.ones(2, requires_grad=True)
    x.sum().backward()
    return x


def _call(name, subject, key=None):
    extra, _ = FUZZED_CHECKS[name]
    function = getattr(checks, name)
    if name == "check_grad_fn":
        return function(lambda *inputs: subject, *extra, key=key)
    if name == "check_module":
        return function(subject, key=key, **MODULE_RULE)
    if name == "check_classifier":
        return function(subject, key=key, **NETWORK_RULE)
    return function(subject, *extra, key=key)


#: hidden record kind -> (the solution's value, the record's parameters)
HIDDEN_FUZZ = {
    "tensor": (torch.ones(2), {}),
    "scalar": (1.0, {}),
    "value": ("a", {}),
    "constraint": ([], {}),
    "classifier": (
        nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
        {"architecture": "sequential", "min_accuracy": 0.0, **NETWORK_RULE},
    ),
}


@pytest.fixture(scope="module")
def fuzz_reference(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("fuzz") / "reference.pt"
    os.environ[checks.RECORD_ENV] = str(path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for name, (_, solution) in FUZZED_CHECKS.items():
                subject = {"check_grad": _solution_leaf(), "check_grad_fn": torch.ones(2)}.get(name, solution)
                _call(name, subject, key=f"ex_fuzz/{name}")
            for kind, (solution, params) in HIDDEN_FUZZ.items():
                checks.record(f"ex_fuzz_{kind}/hidden", solution, kind=kind, **params)
    finally:
        os.environ.pop(checks.RECORD_ENV, None)
    return load_records(path)


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(ANYTHING)
def test_any_input_gets_a_check_failure_or_a_pass_and_the_same_verdict_from_the_grader(
    fuzz_reference, tmp_path_factory, value
):
    """Whatever a learner returns, each check passes or raises CheckFailure (nothing else), and the grader,
    reading what the check recorded, decides the same (hidden records: the same rule on the raw value)."""
    tmp = tmp_path_factory.mktemp("one")
    for name in FUZZED_CHECKS:
        key = f"ex_fuzz/{name}"
        call = Call("fuzz", name, (), {}, key)
        record_file = tmp / f"{name}.pt"
        os.environ[checks.RECORD_ENV] = str(record_file)
        try:
            visible = _verdict(_call, name, value, key)
        finally:
            os.environ.pop(checks.RECORD_ENV, None)
        verdict = compare_records(read_back(record_file), {key: fuzz_reference[key]})["ex_fuzz"]
        assert verdict.passed == visible[0], (call.key, visible, verdict.message)
        assert visible[0] or visible[1] in verdict.message
    for kind, (_, params) in HIDDEN_FUZZ.items():
        key = f"ex_fuzz_{kind}/hidden"
        call = Call("fuzz", "record", (key, value), {"kind": kind, **params}, key)
        outcome = evaluate(call, fuzz_reference, "fuzzed", value, tmp)
        assert outcome.agree, (key, outcome)
    with contextlib.redirect_stdout(io.StringIO()):
        _verdict(checks.check_at_least, value, 0.5)


# ---------------------------------------------------------------- the table for the closing note


COLUMNS = [
    "as is",
    "other float dtype",
    "NumPy array",
    "NumPy scalar",
    "Python number",
    "list",
    "tuple",
    "non-contiguous",
    "requires grad",
    "attached",
    "nn.Parameter",
    "0-d / 1-element",
    "NaN",
    "inf",
    "wrong value",
    "transposed",
    "meta",
    "sparse",
    "2 elements",
    "raises",
    "other",
    "over budget",
    "unknown layer",
    "subclass",
    "state_dict",
    "forbidden call",
    "`@`",
    "import",
    "outside name",
    "escape hatch",
    "private attribute",
    "global",
    "lambda",
    "requires_grad=True",
    "required helper unused",
    "bypass",
    "accepted",
]


def column(variant: str) -> str:
    """The table's column of an answer variant (the batteries of samples.BYPASSES and ACCEPTED, one column each)."""
    return variant.split(" ")[0] if variant.startswith(("bypass ", "accepted ")) else variant


def table(all_outcomes: list[Outcome], skipped: list[tuple] = ()) -> str:
    """Markdown: one row per task, one column per kind of answer: agreeing/total (passing answers in brackets),
    and how many variants did not apply to the task's answers."""
    cells, rows, not_applicable = defaultdict(lambda: [0, 0, 0]), [], defaultdict(int)
    for o in all_outcomes:
        for name in (column(o.variant), "all"):
            cell = cells[o.task, name]
            cell[0] += o.agree
            cell[1] += 1
            cell[2] += bool(o.visible[0])
        rows.append(o.task) if o.task not in rows else None
    for task, *_ in skipped:
        not_applicable[task] += 1
    unknown = {column(o.variant) for o in all_outcomes} - set(COLUMNS)
    assert not unknown, f"variants without a column: {unknown}"
    used = [c for c in COLUMNS if any((task, c) in cells for task in rows)]
    lines = ["| task | " + " | ".join(used) + " | n/a | agreement |", "|---" * (len(used) + 3) + "|"]
    for task in rows:
        row = [
            f"{cells[task, c][0]}/{cells[task, c][1]} ({cells[task, c][2]}✔)" if (task, c) in cells else "–"
            for c in used
        ]
        agree, total = cells[task, "all"][:2]
        lines.append(f"| {task} | " + " | ".join(row) + f" | {not_applicable[task]} | {100 * agree / total:.0f}% |")
    agree, total = sum(o.agree for o in all_outcomes), len(all_outcomes)
    passing = sum(bool(o.visible[0]) for o in all_outcomes)
    lines.append(
        f"\n{agree}/{total} answers agree ({100 * agree / total:.1f}%); {passing} pass on both sides, "
        f"{total - passing} fail; {len(rows)} tasks, {len({o.key for o in all_outcomes})} checks and records; "
        f"{len(skipped)} variants not applicable (skipped)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory() as tmp:
        everything, skipped = [], []
        for path in NOTEBOOKS:
            outcomes, not_applicable = outcomes_of(run_solution(path, Path(tmp) / f"{path.stem}.pt"), Path(tmp))
            everything += outcomes
            skipped += not_applicable
        print(table(everything, skipped))
        for o in everything:
            if not o.agree:
                print(
                    f"DISAGREE {o.key} [{o.variant}]: notebook {o.visible} grader {o.trusted} {o.problems}",
                    file=sys.stderr,
                )
