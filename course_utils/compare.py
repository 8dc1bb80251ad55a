"""How the course compares a learner's value with an expected one: one rule for both sides.

    >>> tensor_problem(torch.ones(2), torch.ones(3))
    'result has shape (2,), expected shape (3,).'

The learner's checks (``course_utils.checks``, in the learner's kernel) and the grader's trusted
verdicts (``course_utils.grading.verdicts``, in the grader's own process) both call these functions, so
what a visible check accepts is what the grade accepts. Each returns ``None`` when the values match and
otherwise a short sentence saying what differs.
"""
from __future__ import annotations

import math

import torch
from torch import nn


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


def format_number(x) -> str:
    """A number as a learner reads it: six significant digits for floats.

        >>> format_number(0.1 + 0.2)
        '0.3'
    """
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def with_hint(message: str, hint: str | None) -> str:
    """``message`` followed by a line ``Hint: ...`` when there is a hint."""
    return f"{message}\nHint: {hint}" if hint else message


def plain_tensor(value: torch.Tensor) -> torch.Tensor:
    """A detached CPU copy of ``value`` as a plain ``torch.Tensor`` (no subclass, no graph)."""
    return value.detach().cpu().clone().as_subclass(torch.Tensor)


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
            f"got {format_number(got[index].item())}, expected {format_number(want[index].item())} "
            f"(rtol={rtol:g}, atol={atol:g}).")


def as_number(value):
    """``value`` as a Python number when it is one (or a one-element tensor or NumPy value), else None.

        >>> as_number(torch.tensor([2.5])), as_number("2.5")
        (2.5, None)
    """
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
    number = as_number(actual)
    if number is None:
        return f"{name} should be a number (or a one-element tensor), but it is {describe(actual)}."
    if isinstance(number, complex) or math.isnan(number) or math.isinf(number):
        return f"{name} is {number}, not a finite number."
    if math.isclose(number, expected, rel_tol=rtol, abs_tol=atol):
        return None
    if not reveal:
        return f"{name} has the wrong value."
    return f"{name} is {format_number(number)}, expected {format_number(expected)}."


def module_summary(module: nn.Module, sample_input=None) -> dict:
    """Leaf layers as [type name, parameter shapes], parameter count, state_dict, output (shape) on a sample.

        >>> module_summary(nn.Linear(3, 2))["n_params"]
        8
    """
    layers = [[type(m).__name__, [list(p.shape) for p in m.parameters(recurse=False)]]
              for m in module.modules() if not list(m.children())]
    summary = {"layers": layers, "n_params": sum(p.numel() for p in module.parameters()), "output_shape": None,
               "output": None, "state_dict": {k: plain_tensor(v) for k, v in module.state_dict().items()}}
    if sample_input is not None:
        with torch.no_grad():
            out = module(sample_input)
        summary["output_shape"] = list(out.shape) if isinstance(out, torch.Tensor) else describe(out)
        summary["output"] = plain_tensor(out) if isinstance(out, torch.Tensor) else None
    return summary


def module_summary_problem(got, expected: dict, *, reveal: bool = True) -> str | None:
    """What differs between two module summaries: layer types, parameter shapes, count, output shape.

        >>> module_summary_problem(module_summary(nn.ReLU()), module_summary(nn.Tanh()))
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
