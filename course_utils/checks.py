"""Checks for the graded exercises: feedback a learner can act on, and raw results for the grader.

    >>> from course_utils.checks import check_tensor
    >>> check_tensor(torch.ones(2), torch.ones(2))

Two jobs, kept apart on purpose:

* **Teach** (visible tests): ``check_tensor``, ``check_scalar``, ``check_grad``, ``check_grad_fn`` and
  ``check_module`` compare the learner's answer with an expected one in the learner's own kernel and
  raise :class:`CheckFailure` with a short message saying what is wrong (never a bare ``assert``).
* **Guard** (hidden tests): ``record(key, value)`` only stores the learner's raw value in the file named
  by ``COURSE_RECORD_FILE``. It never judges and never sees an expected value. The grader, in its own
  trusted process, loads that file with :func:`load_records` and compares it with the records of the
  solution notebook using :func:`compare_records`. A check called with ``key=`` records its ``actual``
  the same way, so visible tests count in the trusted verdict too.

Keys are ``"<grade_id>/<label>"``: the grade id of the nbgrader test cell, then a label for the test.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

RECORD_ENV = "COURSE_RECORD_FILE"
KINDS = ("tensor", "scalar", "value", "module", "classifier")

__all__ = [
    "CheckFailure", "Verdict", "check_tensor", "check_scalar", "check_at_least", "check_grad", "check_grad_fn",
    "check_module", "record", "load_records", "compare_records", "build_apparel_classifier",
    "apparel_accuracy",
]


class CheckFailure(AssertionError):
    """A check failed; the message says what is wrong and, often, what to try.

        >>> raise CheckFailure("result has shape (2,), expected (3,)")  # doctest: +SKIP
    """


# ---------------------------------------------------------------- describing and comparing values


def describe(value) -> str:
    """A short name for what a value is, for messages.

        >>> describe([1, 2])
        'a list of length 2'
    """
    if value is None:
        return "None (did your function forget to `return`?)"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    module = type(value).__module__
    name = type(value).__name__ if module == "builtins" else f"{module}.{type(value).__name__}"
    if hasattr(value, "shape"):
        return f"a {name} of shape {tuple(value.shape)}"
    return f"a {name} ({value!r:.40})"


def _fmt(x) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def tensor_problem(actual, expected: torch.Tensor, *, rtol: float = 1e-5, atol: float = 1e-8,
                   check_dtype: bool = True, check_device: bool = False, name: str = "result",
                   reveal: bool = True) -> str | None:
    """What is wrong with ``actual`` compared with ``expected`` (None when they match).

        >>> tensor_problem(torch.ones(2), torch.ones(3))
        'result has shape (2,), expected shape (3,).'

    With ``reveal=False`` the message names the kind of difference but no expected value.
    """
    if not isinstance(actual, torch.Tensor):
        return f"{name} should be a tensor, but it is {describe(actual)}."
    if actual.shape != expected.shape:
        want = f", expected shape {tuple(expected.shape)}" if reveal else "; the expected shape differs"
        return f"{name} has shape {tuple(actual.shape)}{want}."
    if check_dtype and actual.dtype != expected.dtype:
        want = f", expected {expected.dtype}" if reveal else "; the expected dtype differs"
        return f"{name} has dtype {actual.dtype}{want}."
    if check_device and actual.device != expected.device:
        return f"{name} is on device {actual.device}, expected {expected.device}."
    got, want = actual.detach().cpu(), expected.detach().cpu()
    if got.is_floating_point() or got.is_complex():
        bad = ~torch.isfinite(got) & torch.isfinite(want.to(got.dtype))
        if bad.any():
            index = tuple(int(i) for i in bad.nonzero()[0])
            return (f"{name} contains NaN or inf ({int(bad.sum())} of {got.numel()} elements), "
                    f"first at index {index}: {got[index].item()}.")
    common = torch.promote_types(got.dtype, want.dtype)
    if not common.is_floating_point and not common.is_complex:
        common = torch.float64
    close = torch.isclose(got.to(common), want.to(common), rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return None
    n_bad, n = int((~close).sum()), close.numel()
    if not reveal:
        return f"{name} has the wrong values ({n_bad} of {n} elements differ)."
    index = tuple(int(i) for i in (~close).nonzero()[0])
    at = f" at index {index}" if index else ""
    return (f"{name} has the wrong values: {n_bad} of {n} elements differ. First{at}: "
            f"got {_fmt(got[index].item())}, expected {_fmt(want[index].item())} "
            f"(rtol={rtol:g}, atol={atol:g}).")


def _as_number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if type(value).__module__ == "numpy" and getattr(value, "size", 0) == 1:
        return value.item()
    return None


def scalar_problem(actual, expected: float, *, rtol: float = 1e-6, atol: float = 1e-8,
                   name: str = "result", reveal: bool = True) -> str | None:
    """What is wrong with a number (None when it is close enough).

        >>> scalar_problem(2.0, 3.0)
        'result is 2, expected 3.'
    """
    number = _as_number(actual)
    if number is None:
        return f"{name} should be a number (or a one-element tensor), but it is {describe(actual)}."
    if isinstance(number, complex) or math.isnan(number) or math.isinf(number):
        return f"{name} is {number}, not a finite number."
    if math.isclose(number, expected, rel_tol=rtol, abs_tol=atol):
        return None
    if not reveal:
        return f"{name} has the wrong value."
    return f"{name} is {_fmt(number)}, expected {_fmt(expected)}."


def _with_hint(message: str, hint: str | None) -> str:
    return f"{message}\nHint: {hint}" if hint else message


# ---------------------------------------------------------------- recording (guard)


_RECORDS: dict = {}
_RECORD_PATH: list = [None]


def _sanitize(value):
    """A copy of value made only of what ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, torch.Tensor):  # a plain tensor, even from a subclass (which weights_only refuses)
        return value.detach().cpu().clone().as_subclass(torch.Tensor)
    if value is None:
        return None
    for plain in (bool, int, float, str):  # exact built-in types: a subclass could carry its own __eq__
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, nn.Module):
        return _module_summary(value)
    if isinstance(value, (list, tuple)):
        return [_sanitize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items()}
    return {"__unsupported__": describe(value)}


def record(key: str, value, *, kind: str = "tensor", **params) -> None:
    """Store the learner's raw ``value`` under ``key`` for the trusted grader (no-op unless grading).

        >>> record("ex01_make_tensor/hidden_shape", torch.zeros(2, 3))

    Recording happens only when the environment variable ``COURSE_RECORD_FILE`` names a file; each call
    rewrites that file atomically. ``params`` (tolerances and the like) are taken from the solution
    notebook's records when grading, never from the learner's.
    """
    if not isinstance(key, str) or key.count("/") != 1 or not all(key.split("/")):
        raise ValueError(f"record key must look like 'grade_id/label', not {key!r}.")
    if kind not in KINDS:
        raise ValueError(f"record kind must be one of {KINDS}, not {kind!r}.")
    path = os.environ.get(RECORD_ENV, "").strip()
    if not path:
        return
    if _RECORD_PATH[0] != path:
        _RECORDS.clear()
        _RECORD_PATH[0] = path
    _RECORDS[key] = {"kind": kind, "value": _sanitize(value), "params": _sanitize(params)}
    _write_atomically(Path(path), _RECORDS)


def _write_atomically(path: Path, records: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".records-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(records, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_records(path) -> dict:
    """Read a record file safely (``weights_only=True``: no pickled code runs) and check its layout.

        >>> load_records("grading/records/alice/01_tensors_vs_numpy.pt")  # doctest: +SKIP
        {'ex01_arange_matrix/visible': {'kind': 'tensor', 'value': tensor(...), 'params': {...}}}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No record file at {path}: the notebook recorded nothing "
                                f"(was {RECORD_ENV} set, and did any test cell run?).")
    try:
        records = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # corrupt, truncated, or holds objects that are not plain data
        raise ValueError(f"Record file {path} cannot be read safely ({type(error).__name__}: "
                         f"{str(error)[:200]}). Re-run the notebook to write it again.") from None
    _validate(records, path)
    return records


def _validate(records, path) -> None:
    if not isinstance(records, dict):
        raise ValueError(f"Record file {path} holds {describe(records)}, not a dict of records.")
    for key, entry in records.items():
        problem = None
        if not isinstance(key, str) or key.count("/") != 1:
            problem = f"key {key!r} is not 'grade_id/label'"
        elif not isinstance(entry, dict) or set(entry) != {"kind", "value", "params"}:
            problem = f"entry {key!r} is not a dict with kind, value and params"
        elif entry["kind"] not in KINDS or not isinstance(entry["params"], dict):
            problem = f"entry {key!r} has an unknown kind or params that are not a dict"
        if problem:
            raise ValueError(f"Record file {path} is malformed: {problem}.")


# ---------------------------------------------------------------- trusted comparison


@dataclass(frozen=True)
class Verdict:
    """The trusted outcome for one graded test cell.

        >>> Verdict("ex01_arange_matrix", True, "all 3 tests passed").passed
        True
    """
    grade_id: str
    passed: bool
    message: str


def _compare_entry(label: str, got: dict | None, ref: dict) -> str | None:
    """None when the student's entry matches the reference entry, else a learner-facing message."""
    params, visible = ref["params"], bool(ref["params"].get("visible"))
    what = f"{'visible check' if visible else 'hidden test'} {label!r}"
    if got is None:
        return f"{what} was not recorded: did the cell run to the end?"
    kind, value, expected = ref["kind"], got["value"], ref["value"]
    if kind == "tensor" and isinstance(expected, list):
        if not isinstance(value, list) or len(value) != len(expected):
            problem = f"expected {len(expected)} tensors, got {describe(value)}"
        else:
            problems = [_compare_entry(f"{label}[{i}]", {"value": v},
                                       {"kind": "tensor" if isinstance(e, torch.Tensor) or e is None else "scalar",
                                        "value": e, "params": params})
                        for i, (v, e) in enumerate(zip(value, expected))]
            problem = next((p.split(" failed: ", 1)[1] for p in problems if p), None)
    elif kind == "tensor":
        if expected is None:
            problem = None if value is None else "expected no value"
        elif value is None:
            problem = "no value (for a gradient: .grad was None; was requires_grad set and backward called?)"
        else:
            problem = tensor_problem(value, expected, rtol=params.get("rtol", 1e-5),
                                     atol=params.get("atol", 1e-8), check_dtype=params.get("check_dtype", True),
                                     name="the result", reveal=visible)
    elif kind == "scalar":
        problem = scalar_problem(value, float(expected), rtol=params.get("rtol", 1e-6),
                                 atol=params.get("atol", 1e-8), name="the result", reveal=visible)
    elif kind == "value":
        problem = None if _plain_equal(value, expected) else "the result differs"
    elif kind == "module":
        problem = module_summary_problem(value, expected, reveal=visible)
    else:  # classifier
        problem = classifier_problem(value, params)
    return None if problem is None else f"{what} failed: {problem}"


def _plain_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool((a == b).all()))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_plain_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_plain_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def compare_records(student: dict, reference: dict) -> dict[str, Verdict]:
    """Trusted verdicts, one per grade id in ``reference``: passed iff every reference key matches.

        >>> compare_records({}, {"ex01_a/x": {"kind": "value", "value": 1, "params": {}}})["ex01_a"].passed
        False

    Matching uses the reference's kind and params; the student's params and extra keys are ignored.
    """
    by_grade: dict[str, list[str]] = {}
    for key in sorted(reference):
        by_grade.setdefault(key.split("/")[0], []).append(key)
    verdicts = {}
    for grade_id, keys in by_grade.items():
        problems = []
        for key in keys:
            try:
                problem = _compare_entry(key.split("/")[1], student.get(key), reference[key])
            except Exception as error:  # a malformed student value must fail this test, not the grader
                problem = f"test {key.split('/')[1]!r} failed: its value could not be compared ({type(error).__name__})"
            if problem:
                problems.append(problem)
        message = (f"all {len(keys)} tests passed" if not problems
                   else f"{len(problems)} of {len(keys)} tests failed:\n- " + "\n- ".join(problems))
        verdicts[grade_id] = Verdict(grade_id, not problems, message)
    return verdicts


# ---------------------------------------------------------------- teaching checks


def _record_if(key: str | None, value, kind: str, **params) -> None:
    if key is not None:
        record(key, value, kind=kind, visible=True, **params)


def check_tensor(actual, expected, *, rtol: float = 1e-5, atol: float = 1e-8, check_dtype: bool = True,
                 check_device: bool = False, name: str = "result", hint: str | None = None,
                 key: str | None = None) -> None:
    """Fail with a clear message unless ``actual`` is a tensor close to ``expected``.

        >>> check_tensor(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    """
    expected = torch.as_tensor(expected)
    _record_if(key, actual, "tensor", rtol=rtol, atol=atol, check_dtype=check_dtype)
    problem = tensor_problem(actual, expected, rtol=rtol, atol=atol, check_dtype=check_dtype,
                             check_device=check_device, name=name)
    if problem:
        raise CheckFailure(_with_hint(problem, hint)) from None


def check_scalar(actual, expected: float, *, rtol: float = 1e-6, atol: float = 1e-8, name: str = "result",
                 hint: str | None = None, key: str | None = None) -> None:
    """Fail unless ``actual`` is a number (or one-element tensor) close to ``expected``.

        >>> check_scalar(0.1 + 0.2, 0.3)
    """
    _record_if(key, _as_number(actual) if _as_number(actual) is not None else actual, "scalar",
               rtol=rtol, atol=atol)
    problem = scalar_problem(actual, expected, rtol=rtol, atol=atol, name=name)
    if problem:
        raise CheckFailure(_with_hint(problem, hint)) from None


def check_at_least(actual, minimum: float, *, name: str = "result", hint: str | None = None) -> None:
    """Fail unless ``actual`` is a number of at least ``minimum`` (feedback only: it records nothing).

        >>> check_at_least(0.91, 0.8, name="validation accuracy")
    """
    number = _as_number(actual)
    if number is None:
        raise CheckFailure(_with_hint(f"{name} should be a number, but it is {describe(actual)}.", hint)) from None
    if not number >= minimum:
        raise CheckFailure(_with_hint(f"{name} is {_fmt(number)}, it should be at least {_fmt(minimum)}.",
                                      hint)) from None


def check_grad(tensor, expected, *, rtol: float = 1e-5, atol: float = 1e-8, name: str = "x",
               hint: str | None = None, key: str | None = None) -> None:
    """Fail unless ``tensor.grad`` exists and is close to ``expected``.

        >>> x = torch.ones(2, requires_grad=True); (3 * x).sum().backward(); check_grad(x, [3.0, 3.0])
    """
    if not isinstance(tensor, torch.Tensor):
        _record_if(key, tensor, "tensor", rtol=rtol, atol=atol)
        raise CheckFailure(_with_hint(f"{name} should be a tensor, but it is {describe(tensor)}.", hint)) from None
    _record_if(key, tensor.grad, "tensor", rtol=rtol, atol=atol)
    if tensor.grad is None:
        why = ("it does not require gradients: create it with requires_grad=True (or call "
               ".requires_grad_()) before computing with it"
               if not tensor.requires_grad else
               "backward() was not called on a result computed from it (or it is not a leaf tensor: "
               "use the tensor you created, not one computed from it)")
        raise CheckFailure(_with_hint(f"{name}.grad is None: {why}.", hint)) from None
    expected = torch.as_tensor(expected, dtype=tensor.grad.dtype)
    problem = tensor_problem(tensor.grad, expected, rtol=rtol, atol=atol, name=f"{name}.grad")
    if problem:
        raise CheckFailure(_with_hint(problem, hint)) from None


def _autograd_gradient(fn, inputs: tuple) -> tuple:
    leaves = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
    out = fn(*leaves)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise ValueError(f"fn must return a one-element tensor, it returned {describe(out)}.")
    return torch.autograd.grad(out, leaves, allow_unused=True)


def _finite_difference(fn, x: torch.Tensor, others: tuple, index: int, eps: float) -> torch.Tensor:
    """Central differences of fn with respect to inputs[index], in float64."""
    args = [t.detach().double().clone() for t in others]
    base = x.detach().double().clone()
    grad = torch.zeros_like(base)
    flat, gflat = base.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        args[index] = base
        plus = fn(*args).item()
        flat[i] = old - eps
        minus = fn(*args).item()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def check_grad_fn(grad_fn, fn, inputs, *, rtol: float = 1e-4, atol: float = 1e-6, eps: float = 1e-6,
                  name: str = "your gradient", hint: str | None = None, key: str | None = None) -> None:
    """Fail unless ``grad_fn(*inputs)`` equals the gradient of scalar ``fn`` by autograd and finite differences.

        >>> check_grad_fn(lambda x: 2 * x, lambda x: (x ** 2).sum(), (torch.tensor([1.0, -2.0]),))

    ``grad_fn`` returns one gradient tensor per input (a bare tensor when there is one input).
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    grads = grad_fn(*[x.detach().clone() for x in inputs])
    _record_if(key, grads, "tensor", rtol=rtol, atol=atol, check_dtype=False)
    if len(inputs) == 1 and isinstance(grads, torch.Tensor):
        grads = (grads,)
    if not isinstance(grads, (tuple, list)) or len(grads) != len(inputs):
        raise CheckFailure(_with_hint(f"{name} should return {len(inputs)} gradient tensor(s), one per input, "
                                      f"but it returned {describe(grads)}.", hint)) from None
    reference = _autograd_gradient(fn, inputs)
    for i, (got, want) in enumerate(zip(grads, reference)):
        label = name if len(inputs) == 1 else f"{name} for input {i}"
        want = torch.zeros_like(inputs[i]) if want is None else want
        problem = tensor_problem(got, want.detach(), rtol=rtol, atol=atol, name=label, check_dtype=False)
        if problem:
            raise CheckFailure(_with_hint(problem + " (compared with autograd)", hint)) from None
        numeric = _finite_difference(fn, inputs[i], inputs, i, eps)
        problem = tensor_problem(got.double(), numeric, rtol=1e-3, atol=1e-5, name=label, check_dtype=False)
        if problem:
            raise CheckFailure(_with_hint(problem + " (compared with finite differences)", hint)) from None


def _module_summary(module: nn.Module, sample_input=None) -> dict:
    """Leaf layers as [type name, parameter shapes], parameter count, state_dict, output (shape) on a sample."""
    layers = [[type(m).__name__, [list(p.shape) for p in m.parameters(recurse=False)]]
              for m in module.modules() if not list(m.children())]
    summary = {"layers": layers, "n_params": sum(p.numel() for p in module.parameters()), "output_shape": None,
               "output": None, "state_dict": {k: _sanitize(v) for k, v in module.state_dict().items()}}
    if sample_input is not None:
        with torch.no_grad():
            out = module(sample_input)
        summary["output_shape"] = list(out.shape) if isinstance(out, torch.Tensor) else describe(out)
        summary["output"] = _sanitize(out) if isinstance(out, torch.Tensor) else None
    return summary


def module_summary_problem(got, expected: dict, *, reveal: bool = True) -> str | None:
    """What differs between two module summaries: layer types, parameter shapes, count, output shape.

        >>> module_summary_problem(_module_summary(nn.ReLU()), _module_summary(nn.Tanh()))
        "layer types are ['ReLU'], expected ['Tanh']"
    """
    if not isinstance(got, dict) or "layers" not in got:
        return f"expected a module, got {got.get('__unsupported__', 'something else') if isinstance(got, dict) else describe(got)}"
    got_types = [layer[0] for layer in got["layers"]]
    want_types = [layer[0] for layer in expected["layers"]]
    if got_types != want_types:
        return f"layer types are {got_types}, expected {want_types}" if reveal else "the layer types differ"
    for (kind, got_shapes), (_, want_shapes) in zip(got["layers"], expected["layers"]):
        if want_shapes is not None and got_shapes != want_shapes:
            return (f"a {kind} layer has parameter shapes {got_shapes}, expected {want_shapes}" if reveal
                    else f"the parameter shapes of a {kind} layer differ")
    if expected.get("n_params") is not None and got["n_params"] != expected["n_params"]:
        return (f"it has {got['n_params']} parameters, expected {expected['n_params']}" if reveal
                else "the parameter count differs")
    if expected.get("output_shape") is not None and got.get("output_shape") != expected["output_shape"]:
        return (f"the output has shape {got.get('output_shape')}, expected {expected['output_shape']}" if reveal
                else "the output shape differs")
    return None


def check_module(module, *, layer_types=None, n_params: int | None = None, sample_input=None,
                 output_shape=None, hint: str | None = None, key: str | None = None) -> None:
    """Fail unless ``module`` is an ``nn.Module`` with these leaf layer types, parameter count and output shape.

        >>> check_module(nn.Linear(3, 2), layer_types=["Linear"], n_params=8)

    Layer types are the class names of the leaf modules in order, e.g. ``["Linear", "ReLU", "Linear"]``.
    """
    if not isinstance(module, nn.Module):
        _record_if(key, module, "module")
        raise CheckFailure(_with_hint(f"expected an nn.Module, but got {describe(module)}. Did you "
                                      "subclass nn.Module and return an instance?", hint)) from None
    try:
        summary = _module_summary(module, sample_input)
    except Exception as error:
        _record_if(key, {"__unsupported__": "a module whose forward fails"}, "module")
        raise CheckFailure(_with_hint(f"calling your module on a sample input of shape "
                                      f"{tuple(sample_input.shape)} failed with {type(error).__name__}: {error}",
                                      hint)) from None
    _record_if(key, summary, "module")
    expected = {"layers": [[t, None] for t in layer_types] if layer_types is not None else summary["layers"],
                "n_params": n_params,
                "output_shape": list(output_shape) if output_shape is not None else None}
    problem = module_summary_problem(summary, expected)
    if problem:
        raise CheckFailure(_with_hint(f"your module is not as expected: {problem}.", hint)) from None


# ---------------------------------------------------------------- the apparel classifier (exercise 07)


APPAREL_HIDDEN = 128


def build_apparel_classifier() -> nn.Sequential:
    """The prescribed exercise-07 architecture: flatten, Linear(784, 128), ReLU, Linear(128, 10).

        >>> sum(p.numel() for p in build_apparel_classifier().parameters())
        101770
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, APPAREL_HIDDEN), nn.ReLU(),
                         nn.Linear(APPAREL_HIDDEN, 10))


ARCHITECTURES = {"apparel_mlp": build_apparel_classifier}


def apparel_accuracy(model: nn.Module, split: str = "test") -> float:
    """Accuracy of ``model`` on a Fashion-MNIST split, inputs normalised as in ``course_utils.data``.

        >>> apparel_accuracy(build_apparel_classifier()) < 0.3  # untrained  # doctest: +SKIP
        True
    """
    from course_utils.data import load_fashion_mnist, normalize_images

    images, labels = load_fashion_mnist(split)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), 2000):
            logits = model(normalize_images(images[start:start + 2000]))
            correct += int((logits.argmax(dim=1) == labels[start:start + 2000]).sum())
    return correct / len(labels)


def classifier_problem(state_dict, params: dict) -> str | None:
    """Rebuild the prescribed architecture from a recorded state_dict and test it (trusted side)."""
    builder = ARCHITECTURES[params.get("architecture", "apparel_mlp")]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        return f"expected the trained model's state_dict, got {describe(state_dict)}"
    model = builder()
    try:
        model.load_state_dict(state_dict, strict=True)
    except Exception:
        return "the recorded weights do not fit the prescribed architecture (did you change the model?)"
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return "the trained weights contain NaN or inf (learning rate too large?)"
    accuracy = apparel_accuracy(model, params.get("split", "test"))
    floor = float(params.get("min_accuracy", 0.8))
    if accuracy < floor:
        return f"test accuracy {accuracy:.3f} is below the required {floor:.2f}"
    return None
