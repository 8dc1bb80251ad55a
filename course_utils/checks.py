"""What the exercises' test cells call, in the learner's own kernel: checks that teach, and ``record``.

    >>> from course_utils.checks import check_tensor
    >>> check_tensor(torch.ones(2), torch.ones(2))
    ✔ result: passed

Two jobs, kept apart on purpose:

* **Teach** (visible tests): ``check_tensor``, ``check_scalar``, ``check_at_least``, ``check_grad``,
  ``check_grad_fn`` and ``check_module`` compare the learner's answer with an expected one and either print
  a one-line confirmation or raise :class:`CheckFailure` with a short message saying what is wrong (never a
  bare ``assert``). The comparison rules live in ``course_utils.compare``, shared with the grader.
* **Guard** (hidden tests): ``record(key, value)`` only stores the learner's raw value in the file named by
  ``COURSE_RECORD_FILE``. It never judges and never sees an expected value. The grader, in its own trusted
  process, compares the file with the solution notebook's records (``course_utils.grading.verdicts``). A
  check called with ``key=`` records its ``actual`` the same way, so visible tests count in the grade too.

Keys are ``"<grade_id>/<label>"``: the grade id of the nbgrader test cell, then a label for the test.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from course_utils import env
from course_utils.atomic import replacing
from course_utils.compare import (as_number, describe, format_number, module_summary, module_summary_problem,
                                  plain_tensor, scalar_problem, tensor_problem, with_hint)

#: the environment variable naming the record file (set by the grader only)
RECORD_ENV = env.RECORD_FILE
#: how the grader compares a record with the solution's (see course_utils.grading.verdicts)
KINDS = ("tensor", "scalar", "value", "module", "classifier", "constraint")

__all__ = [
    "CheckFailure", "check_tensor", "check_scalar", "check_at_least", "check_grad", "check_grad_fn",
    "check_module", "record",
]


class CheckFailure(AssertionError):
    """A check failed; the message says what is wrong and, often, what to try.

        >>> raise CheckFailure("result has shape (2,), expected (3,)")  # doctest: +SKIP
    """


def _passed(name: str) -> None:
    print(f"✔ {name}: passed")


# ---------------------------------------------------------------- recording (guard)


_RECORDS: dict = {}
_RECORD_PATH: list = [None]


def _sanitize(value):
    """A copy of value made only of what ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, torch.Tensor):  # a plain tensor, even from a subclass (which weights_only refuses)
        return plain_tensor(value)
    if value is None:
        return None
    for plain in (bool, int, float, str):  # exact built-in types: a subclass could carry its own __eq__
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, nn.Module):
        return module_summary(value)
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
    with replacing(Path(path)) as tmp:
        torch.save(_RECORDS, tmp)


def _record_if(key: str | None, value, kind: str, **params) -> None:
    if key is not None:
        record(key, value, kind=kind, visible=True, **params)


# ---------------------------------------------------------------- teaching checks


def check_tensor(actual, expected, *, rtol: float = 1e-5, atol: float = 1e-8, check_dtype: bool = True,
                 check_device: bool = False, name: str = "result", hint: str | None = None,
                 key: str | None = None) -> None:
    """Fail with a clear message unless ``actual`` is a tensor close to ``expected``.

        >>> check_tensor(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
        ✔ result: passed
    """
    expected = torch.as_tensor(expected)
    _record_if(key, actual, "tensor", rtol=rtol, atol=atol, check_dtype=check_dtype)
    problem = tensor_problem(actual, expected, rtol=rtol, atol=atol, check_dtype=check_dtype,
                             check_device=check_device, name=name)
    if problem:
        raise CheckFailure(with_hint(problem, hint)) from None
    _passed(name)


def check_scalar(actual, expected: float, *, rtol: float = 1e-6, atol: float = 1e-8, name: str = "result",
                 hint: str | None = None, key: str | None = None) -> None:
    """Fail unless ``actual`` is a number (or one-element tensor) close to ``expected``.

        >>> check_scalar(0.1 + 0.2, 0.3)
        ✔ result: passed
    """
    _record_if(key, as_number(actual) if as_number(actual) is not None else actual, "scalar",
               rtol=rtol, atol=atol)
    problem = scalar_problem(actual, expected, rtol=rtol, atol=atol, name=name)
    if problem:
        raise CheckFailure(with_hint(problem, hint)) from None
    _passed(name)


def check_at_least(actual, minimum: float, *, name: str = "result", hint: str | None = None) -> None:
    """Fail unless ``actual`` is a number of at least ``minimum`` (feedback only: it records nothing).

        >>> check_at_least(0.91, 0.8, name="validation accuracy")
        ✔ validation accuracy: passed
    """
    number = as_number(actual)
    if number is None:
        raise CheckFailure(with_hint(f"{name} should be a number, but it is {describe(actual)}.", hint)) from None
    if not number >= minimum:
        raise CheckFailure(with_hint(f"{name} is {format_number(number)}, it should be at least "
                                     f"{format_number(minimum)}.", hint)) from None
    _passed(name)


def check_grad(tensor, expected, *, rtol: float = 1e-5, atol: float = 1e-8, name: str = "x",
               hint: str | None = None, key: str | None = None) -> None:
    """Fail unless ``tensor.grad`` exists and is close to ``expected``.

        >>> x = torch.ones(2, requires_grad=True); (3 * x).sum().backward(); check_grad(x, [3.0, 3.0])
        ✔ x.grad: passed
    """
    if not isinstance(tensor, torch.Tensor):
        _record_if(key, tensor, "tensor", rtol=rtol, atol=atol)
        raise CheckFailure(with_hint(f"{name} should be a tensor, but it is {describe(tensor)}.", hint)) from None
    _record_if(key, tensor.grad, "tensor", rtol=rtol, atol=atol)
    if tensor.grad is None:
        why = ("it does not require gradients: create it with requires_grad=True (or call "
               ".requires_grad_()) before computing with it"
               if not tensor.requires_grad else
               "backward() was not called on a result computed from it (or it is not a leaf tensor: "
               "use the tensor you created, not one computed from it)")
        raise CheckFailure(with_hint(f"{name}.grad is None: {why}.", hint)) from None
    expected = torch.as_tensor(expected, dtype=tensor.grad.dtype)
    problem = tensor_problem(tensor.grad, expected, rtol=rtol, atol=atol, name=f"{name}.grad")
    if problem:
        raise CheckFailure(with_hint(problem, hint)) from None
    _passed(f"{name}.grad")


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
        ✔ your gradient: passed

    ``grad_fn`` returns one gradient tensor per input (a bare tensor when there is one input).
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    grads = grad_fn(*[x.detach().clone() for x in inputs])
    _record_if(key, grads, "tensor", rtol=rtol, atol=atol, check_dtype=False)
    if len(inputs) == 1 and isinstance(grads, torch.Tensor):
        grads = (grads,)
    if not isinstance(grads, (tuple, list)) or len(grads) != len(inputs):
        raise CheckFailure(with_hint(f"{name} should return {len(inputs)} gradient tensor(s), one per input, "
                                     f"but it returned {describe(grads)}.", hint)) from None
    reference = _autograd_gradient(fn, inputs)
    for i, (got, want) in enumerate(zip(grads, reference)):
        label = name if len(inputs) == 1 else f"{name} for input {i}"
        want = torch.zeros_like(inputs[i]) if want is None else want
        problem = tensor_problem(got, want.detach(), rtol=rtol, atol=atol, name=label, check_dtype=False)
        if problem:
            raise CheckFailure(with_hint(problem + " (compared with autograd)", hint)) from None
        numeric = _finite_difference(fn, inputs[i], inputs, i, eps)
        problem = tensor_problem(got.double(), numeric, rtol=1e-3, atol=1e-5, name=label, check_dtype=False)
        if problem:
            raise CheckFailure(with_hint(problem + " (compared with finite differences)", hint)) from None
    _passed(name)


def check_module(module, *, layer_types=None, n_params: int | None = None, sample_input=None,
                 output_shape=None, name: str = "your module", hint: str | None = None,
                 key: str | None = None) -> None:
    """Fail unless ``module`` is an ``nn.Module`` with these leaf layer types, parameter count and output shape.

        >>> check_module(nn.Linear(3, 2), layer_types=["Linear"], n_params=8)
        ✔ your module: passed

    Layer types are the class names of the leaf modules in order, e.g. ``["Linear", "ReLU", "Linear"]``.
    """
    if not isinstance(module, nn.Module):
        _record_if(key, module, "module")
        raise CheckFailure(with_hint(f"expected an nn.Module, but got {describe(module)}. Did you "
                                     "subclass nn.Module and return an instance?", hint)) from None
    try:
        summary = module_summary(module, sample_input)
    except Exception as error:
        _record_if(key, {"__unsupported__": "a module whose forward fails"}, "module")
        raise CheckFailure(with_hint(f"calling your module on a sample input of shape "
                                     f"{tuple(sample_input.shape)} failed with {type(error).__name__}: {error}",
                                     hint)) from None
    _record_if(key, summary, "module")
    expected = {"layers": [[t, None] for t in layer_types] if layer_types is not None else summary["layers"],
                "n_params": n_params,
                "output_shape": list(output_shape) if output_shape is not None else None}
    problem = module_summary_problem(summary, expected)
    if problem:
        raise CheckFailure(with_hint(f"{name} is not as expected: {problem}.", hint)) from None
    _passed(name)
