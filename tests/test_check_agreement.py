"""Spec: one rule for both sides. What a learner sees in the notebook is what the grader decides.

Each solution notebook runs once, in this process, with recording on (its records are the trusted
reference, as in grading) while every keyed check and every ``record`` call is captured with its
arguments. Then, for each captured call, a battery of answers is built from the solution's own answer
(the other float dtype, NumPy, Python numbers, lists, non-contiguous views, tensors requiring grad or
attached to a graph, 0-d vs 1-element, NaN, inf, a wrong value, meta and sparse tensors, ...), and for
each answer:

* the **visible verdict**: the check itself, called in this process as the notebook would call it
  (for a hidden ``record``: the check a learner would run on that value, with the reference value as
  the expected one and the reference's tolerances);
* the **trusted verdict**: ``compare_records`` on the record file that call wrote, against the reference.

They must agree on every answer, and for visible checks the grader's message must be the learner's
message. ``python tests/test_check_agreement.py`` prints the agreement table (tasks x answers).
"""
from __future__ import annotations

import contextlib
import io
import copy
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

from course_utils import checks
from course_utils.compare import answer, judge
from course_utils.grading.cells import grade_id as cell_grade_id
from course_utils.grading import references
from course_utils.grading.classifier import classifier_problem
from course_utils.grading.records import load_record_bytes
from course_utils.grading.sandbox import Limits
from course_utils.grading.verdicts import compare_records, load_records

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "solutions").glob("*/*.ipynb"))
RECORD_CAP = Limits().record_bytes


def read_back(record_file: Path) -> dict:
    """A kernel's record file as the grader reads it (size, depth and layout checked, weights only)."""
    return load_record_bytes(record_file.read_bytes(), RECORD_CAP) if record_file.exists() else {}


KEYED_CHECKS = ("check_tensor", "check_scalar", "check_grad", "check_grad_fn", "check_module")


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


def _snapshot(value):
    """A copy that later steps of the notebook cannot change (values computed from a graph stay as they are)."""
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def run_solution(path: Path, record_file: Path) -> list[Call]:
    """Execute the notebook's code cells here, in order, as its kernel would; return its keyed calls."""
    calls, originals = [], {name: getattr(checks, name) for name in (*KEYED_CHECKS, "record")}

    def spy(name):
        def wrapper(*args, **kwargs):
            key = args[0] if name == "record" else kwargs.get("key")
            if key is not None:
                calls.append(Call(path.stem, name, _snapshot(args), _snapshot(kwargs), key))
            return originals[name](*args, **kwargs)
        return wrapper

    nb = nbformat.read(path, as_version=4)
    namespace = {"__name__": "__main__"}
    saved = os.environ.get(checks.RECORD_ENV)
    try:
        for name in originals:
            setattr(checks, name, spy(name))
        os.environ[checks.RECORD_ENV] = str(record_file)
        with contextlib.chdir(path.parent), contextlib.redirect_stdout(io.StringIO()):
            for cell in nb.cells:
                if cell.cell_type == "code":
                    exec(compile(cell.source, f"<{cell_grade_id(cell) or 'cell'}>", "exec"), namespace)
    finally:
        for name, function in originals.items():
            setattr(checks, name, function)
        if saved is None:
            os.environ.pop(checks.RECORD_ENV, None)
        else:
            os.environ[checks.RECORD_ENV] = saved
    return calls


# ---------------------------------------------------------------- the battery of answers


def _noncontiguous(t: torch.Tensor) -> torch.Tensor:
    return torch.stack([t.detach(), t.detach()], dim=-1)[..., 0]


def _poke(t: torch.Tensor, value) -> torch.Tensor:
    out = t.detach().clone(memory_format=torch.contiguous_format)
    out.view(-1)[0] = value
    return out


def tensor_variants(t: torch.Tensor) -> dict:
    t = t.detach()
    out = {"as is": t, "non-contiguous": _noncontiguous(t), "list": t.tolist(), "meta": t.to("meta")}
    if t.dtype in (torch.float32, torch.float64):
        out["other float dtype"] = t.double() if t.dtype == torch.float32 else t.float()
    elif t.dtype != torch.bool:
        out["other float dtype"] = t.float()
    if t.dtype != torch.bfloat16:
        out["NumPy array"] = t.numpy()
        if t.numel() == 1:
            out["NumPy scalar"] = t.numpy().reshape(-1)[0]
    if t.numel() == 1:
        out["Python number"] = t.item()
        out["0-d / 1-element"] = t.reshape(1) if t.dim() == 0 else t.reshape(())
    else:
        out["0-d / 1-element"] = t.unsqueeze(0)
    if t.is_floating_point():
        out["requires grad"] = t.clone().requires_grad_()
        out["attached"] = t.clone().requires_grad_() * 1
        out["nn.Parameter"] = nn.Parameter(t.clone())
        if t.numel():
            out["NaN"] = _poke(t, float("nan"))
            out["inf"] = _poke(t, float("inf"))
    if t.numel():
        first = t.reshape(-1)[0]
        out["wrong value"] = _poke(t, ~first if t.dtype == torch.bool else first + 1)
    else:
        out["wrong value"] = torch.zeros((1, *t.shape[1:]), dtype=t.dtype)
    if t.dim() == 2:
        out["transposed"] = t.T
    if t.dim() >= 1:
        out["sparse"] = t.to_sparse()
    return out


def number_variants(x) -> dict:
    out = {"as is": x, "NumPy scalar": np.float32(x), "NumPy array": np.array([x]), "list": [x],
           "0-d / 1-element": torch.tensor(x), "other float dtype": torch.tensor([x], dtype=torch.float64),
           "requires grad": torch.tensor(float(x), requires_grad=True), "attached":
               torch.tensor(float(x), requires_grad=True) * 1, "non-contiguous": _noncontiguous(torch.tensor([x])),
           "NaN": float("nan"), "inf": float("inf"), "wrong value": x * 2 + 1, "meta": torch.tensor(x, device="meta"),
           "other": str(x), "2 elements": torch.tensor([x, x])}
    if isinstance(x, int):
        out["Python number"] = float(x)
        out["NumPy scalar"] = np.int64(x)
    return out


def plain_variants(x) -> dict:
    out = {"as is": x, "wrong value": (not x) if isinstance(x, bool) else f"{x}!" if isinstance(x, str) else None,
           "other": None}
    if isinstance(x, bool):
        out.update({"NumPy scalar": np.bool_(x), "Python number": int(x), "0-d / 1-element": torch.tensor(x),
                    "NumPy array": np.array([x]), "list": [x]})
    elif isinstance(x, str):
        out.update({"NumPy scalar": np.str_(x), "list": [x], "NumPy array": np.array([x]), "Python number": len(x),
                    "tuple": (x,)})
    elif isinstance(x, int):
        out.update({"NumPy scalar": np.int64(x), "Python number": float(x), "0-d / 1-element": torch.tensor(x),
                    "NumPy array": np.array([x]), "list": [x]})
    elif isinstance(x, list):
        out.update({"tuple": tuple(x), "wrong value": x[:-1], "NumPy array": np.array(x), "list": [x],
                    "NumPy scalar": [np.array(x[0])[()], *x[1:]], "Python number": len(x)})
    return out


def list_variants(items: list) -> dict:
    out = {"as is": list(items), "tuple": tuple(items), "wrong value": list(items)[:-1], "other": items[0]}
    for name, variant in value_variants(items[0]).items():
        if name not in ("as is", "wrong value"):
            out[name] = [variant, *items[1:]]
    out["wrong value"] = [value_variants(items[0])["wrong value"], *items[1:]]
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
    return {"as is": leaf, "other float dtype": leaf_with(grad.to(other), other),
            "NumPy array": leaf.detach().numpy(), "list": leaf.detach().tolist(),
            "requires grad": leaf.detach().clone().requires_grad_(), "attached": leaf.detach().clone().requires_grad_() * 1,
            "other": leaf.detach().clone(), "non-contiguous": leaf_with(_noncontiguous(grad)),
            "NaN": leaf_with(_poke(grad, float("nan"))), "inf": leaf_with(_poke(grad, float("inf"))),
            "wrong value": leaf_with(_poke(grad, grad.reshape(-1)[0] + 1)), "meta": leaf.detach().to("meta")}


def grad_fn_variants(grad_fn) -> dict:
    """Answers for check_grad_fn: functions whose outputs vary."""
    def returning(transform):
        return lambda *inputs: transform(grad_fn(*inputs))

    def boom(*inputs):
        raise ValueError("a bug in the learner's function")

    out = {"raises": boom, "other": lambda *inputs: None}
    for name in ("as is", "other float dtype", "NumPy array", "list", "non-contiguous", "requires grad", "attached",
                 "0-d / 1-element", "NaN", "inf", "wrong value", "meta", "sparse", "tuple"):
        def transform(g, name=name):
            if name == "tuple":
                return (g,) if isinstance(g, torch.Tensor) else tuple(g)
            return tensor_variants(g)[name] if isinstance(g, torch.Tensor) else g
        out[name] = returning(transform)
    return out


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        raise RuntimeError("a bug in forward")


def module_variants(module: nn.Module) -> dict:
    return {"as is": module, "other float dtype": copy.deepcopy(module).double(), "other": type(module),
            "wrong value": nn.Sequential(copy.deepcopy(module), nn.ReLU()), "list": [module],
            "meta": copy.deepcopy(module).to("meta"), "raises": Broken(), "NaN": None}


def state_dict_variants(state: dict) -> dict:
    first = next(iter(state))
    return {"as is": state, "other float dtype": {k: v.double() for k, v in state.items()},
            "requires grad": {k: nn.Parameter(v.clone()) for k, v in state.items()},
            "non-contiguous": {k: _noncontiguous(v) for k, v in state.items()},
            "NaN": {k: _poke(v, float("nan")) if k == first else v for k, v in state.items()},
            "wrong value": {k: torch.zeros_like(v) for k, v in state.items()},
            "NumPy array": {k: v.numpy() for k, v in state.items()}, "meta": {k: v.to("meta") for k, v in state.items()},
            "other": {k: v for k, v in state.items() if k != first}}


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
        problem = classifier_problem(variant, params)
        return problem is None, problem or ""
    value = answer(kind, variant) if kind in ("module", "grad", "grad_fn") else variant
    problem = judge(kind, value, expected, reveal=True, **rule)
    return problem is None, problem or ""


def evaluate(call: Call, reference: dict, variant_name: str, variant, tmp: Path) -> Outcome:
    record_file = tmp / "student.pt"
    record_file.unlink(missing_ok=True)
    ref = reference[call.key]
    problems = []
    os.environ[checks.RECORD_ENV] = str(record_file)
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
    verdict = compare_records(read_back(record_file), {call.key: ref})[call.task]
    trusted = (verdict.passed, verdict.message)
    if "could not be compared" in verdict.message:
        problems.append("the grader could not compare the record")
    if call.function != "record" and visible[0] is False and visible[1] not in verdict.message:
        problems.append("the grader's message is not the learner's")
    if any(internal in verdict.message for internal in ("__what__", "__problem__", "__unsupported__", "{name}")):
        problems.append("the grader's message shows internals")
    return Outcome(call.task, call.key, variant_name, visible, trusted, problems)


def battery(call: Call) -> dict:
    subject = call.args[0] if call.function != "record" and call.args else call.kwargs.get("module")
    if call.function == "record":
        subject = call.args[1]
        if call.kwargs.get("kind") == "classifier":
            return state_dict_variants(subject)
        if call.kwargs.get("kind") == "module":
            return module_variants(subject)
        return value_variants(subject)
    if call.function == "check_grad":
        return leaf_variants(subject)
    if call.function == "check_grad_fn":
        return grad_fn_variants(subject)
    if call.function == "check_module":
        return module_variants(subject)
    return value_variants(subject)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Each solution notebook run once: {notebook: (calls, reference records)}."""
    torch_state = torch.get_rng_state()
    out = {}
    for path in NOTEBOOKS:
        record_file = tmp_path_factory.mktemp(path.stem) / "reference.pt"
        calls = run_solution(path, record_file)
        out[path.stem] = (calls, load_records(record_file))
    torch.set_rng_state(torch_state)
    return out


def outcomes_of(notebook: str, calls: list, reference: dict, tmp: Path) -> list[Outcome]:
    return [evaluate(call, reference, name, variant, tmp)
            for call in calls for name, variant in battery(call).items()]


# ---------------------------------------------------------------- the specification


def test_every_graded_task_is_covered_by_captured_calls(runs):
    for notebook, (calls, reference) in runs.items():
        assert {c.key for c in calls} == set(reference), f"{notebook}: a record was made outside a captured call"
        for call in calls:
            assert len(battery(call)) >= 7, f"{call.key}: too few answer variants"


@pytest.mark.parametrize("notebook", [p.stem for p in NOTEBOOKS])
def test_visible_and_trusted_verdicts_agree_on_every_answer(runs, tmp_path, notebook):
    calls, reference = runs[notebook]
    outcomes = outcomes_of(notebook, calls, reference, tmp_path)
    same = [o for o in outcomes if o.variant == "as is"]
    assert all(o.visible[0] and o.trusted[0] for o in same), [o.key for o in same if not o.trusted[0]]
    assert any(not o.visible[0] for o in outcomes), "the battery must contain failing answers"
    disagreements = [f"{o.key} [{o.variant}]: notebook {o.visible}, grader {o.trusted} {o.problems}"
                     for o in outcomes if not o.agree]
    assert not disagreements, "\n".join(disagreements)


def test_the_reference_key_covers_every_course_module_a_solution_notebook_imports():
    """References are cached by a key over the top-level course_utils modules: a solution must not import
    anything of course_utils beyond them (the learner side never imports the grader)."""
    imported = set()
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            imported |= set(re.findall(r"^\s*(?:from|import)\s+(course_utils(?:\.\w+)*)", cell.source, re.M))
    code = (f"import sys, {', '.join(sorted(imported))}; "
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('course_utils')))")
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
    dtypes = [torch.bool, torch.uint8, torch.int64, torch.uint64, torch.float16, torch.bfloat16, torch.float32,
              torch.float64, torch.complex64, torch.float8_e4m3fn, torch.uint16, torch.complex128]
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
    return st.one_of(st.builds(np.float32, st.floats(width=32)), st.builds(np.int64, st.integers(-5, 5)),
                     st.builds(np.bool_, st.booleans()), st.builds(np.str_, st.text(max_size=3)),
                     st.builds(lambda n: np.ones(n), st.integers(0, 3)),
                     st.builds(lambda n: np.array(["a"] * n, dtype=object), st.integers(1, 2)))


ANYTHING = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.complex_numbers(), st.text(max_size=4),
              st.binary(max_size=4), _tensors(), _numpy(),
              st.sampled_from(["nn.Linear", "nn.Sequential", "class", "function", "hostile", "prickly", "generator",
                               "size", "object", "module", "broken module", "deep", "huge"]).map(lambda name: {
                                   "nn.Linear": lambda: nn.Linear(2, 1), "nn.Sequential": nn.Sequential,
                                   "class": lambda: nn.Linear, "function": lambda: torch.ones,
                                   "hostile": Hostile, "prickly": _prickly, "generator": lambda: (i for i in range(2)),
                                   "size": lambda: torch.Size([2]), "object": object, "module": lambda: torch,
                                   "broken module": Broken, "deep": lambda: _deep(30),
                                   "huge": lambda: list(range(20_000))}[name]())),
    lambda children: st.one_of(st.lists(children, max_size=3), st.lists(children, max_size=3).map(tuple),
                               st.dictionaries(st.text(max_size=3), children, max_size=3)),
    max_leaves=6)

#: (check, extra arguments, the solution's answer): every keyed check, once per fuzzed value
FUZZED_CHECKS = {
    "check_tensor": ((torch.ones(2),), torch.ones(2)),
    "check_scalar": ((1.0,), 1.0),
    "check_grad": (([1.0, 1.0],), None),
    "check_grad_fn": ((lambda x: (x ** 2).sum() / 2, (torch.ones(2),)), None),
    "check_module": ((), nn.Linear(2, 1)),
}
MODULE_RULE = dict(layer_types=["Linear"], n_params=3, sample_input=torch.ones(1, 2), output_shape=(1, 1))


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
    return function(subject, *extra, key=key)


@pytest.fixture(scope="module")
def fuzz_reference(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("fuzz") / "reference.pt"
    os.environ[checks.RECORD_ENV] = str(path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for name, (_, solution) in FUZZED_CHECKS.items():
                subject = {"check_grad": _solution_leaf(), "check_grad_fn": torch.ones(2)}.get(name, solution)
                _call(name, subject, key=f"ex_fuzz/{name}")
            for kind in ("tensor", "scalar", "value"):
                checks.record(f"ex_fuzz_{kind}/hidden", {"tensor": torch.ones(2), "scalar": 1.0, "value": "a"}[kind],
                              kind=kind)
    finally:
        os.environ.pop(checks.RECORD_ENV, None)
    return load_records(path)


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(ANYTHING)
def test_any_input_gets_a_check_failure_or_a_pass_and_the_same_verdict_from_the_grader(fuzz_reference, tmp_path_factory,
                                                                                     value):
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
    for kind in ("tensor", "scalar", "value"):
        key = f"ex_fuzz_{kind}/hidden"
        call = Call("fuzz", "record", (key, value), {"kind": kind}, key)
        outcome = evaluate(call, fuzz_reference, "fuzzed", value, tmp)
        assert outcome.agree, (key, outcome)
    with contextlib.redirect_stdout(io.StringIO()):
        _verdict(checks.check_at_least, value, 0.5)


# ---------------------------------------------------------------- the table for the closing note


COLUMNS = ["as is", "other float dtype", "NumPy array", "NumPy scalar", "Python number", "list", "tuple",
           "non-contiguous", "requires grad", "attached", "nn.Parameter", "0-d / 1-element", "NaN", "inf",
           "wrong value", "transposed", "meta", "sparse", "2 elements", "raises", "other"]


def table(all_outcomes: list[Outcome]) -> str:
    """Markdown: one row per task, one column per kind of answer: agreeing/total (passing answers in brackets)."""
    cells, rows = defaultdict(lambda: [0, 0, 0]), []
    for o in all_outcomes:
        for column in (o.variant, "all"):
            cell = cells[o.task, column]
            cell[0] += o.agree
            cell[1] += 1
            cell[2] += bool(o.visible[0])
        rows.append(o.task) if o.task not in rows else None
    used = [c for c in COLUMNS if any((task, c) in cells for task in rows)]
    lines = ["| task | " + " | ".join(used) + " | agreement |", "|---" * (len(used) + 2) + "|"]
    for task in rows:
        row = [f"{cells[task, c][0]}/{cells[task, c][1]} ({cells[task, c][2]}✔)" if (task, c) in cells else "–"
               for c in used]
        agree, total = cells[task, "all"][:2]
        lines.append(f"| {task} | " + " | ".join(row) + f" | {100 * agree / total:.0f}% |")
    agree, total = sum(o.agree for o in all_outcomes), len(all_outcomes)
    passing = sum(bool(o.visible[0]) for o in all_outcomes)
    lines.append(f"\n{agree}/{total} answers agree ({100 * agree / total:.1f}%); {passing} pass on both sides, "
                 f"{total - passing} fail; {len(rows)} tasks, {len({o.key for o in all_outcomes})} checks and records.")
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory() as tmp:
        everything = []
        for path in NOTEBOOKS:
            calls = run_solution(path, Path(tmp) / f"{path.stem}.pt")
            everything += outcomes_of(path.stem, calls, load_records(Path(tmp) / f"{path.stem}.pt"), Path(tmp))
        print(table(everything))
        for o in everything:
            if not o.agree:
                print(f"DISAGREE {o.key} [{o.variant}]: notebook {o.visible} grader {o.trusted} {o.problems}",
                      file=sys.stderr)
