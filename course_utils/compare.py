"""How the course compares a learner's answer with an expected one: one rule for both sides.

    >>> tensor_problem(torch.ones(2), torch.ones(3))
    'result has shape (2,), expected shape (3,). ...'

The learner's checks (``course_utils.checks``, in the learner's kernel) and the grader's trusted verdicts
(``course_utils.grading.verdicts``, in the grader's own process) both go through two steps defined here:

1. ``answer(kind, value)`` turns the learner's raw value into plain data (detached CPU tensors, Python
   numbers, strings, lists, dicts). This is what ``record`` stores and what the checks judge, so the
   grader judges exactly what the learner's check judged.
2. ``judge(kind, value, expected, **rule)`` says what is wrong (a sentence) or returns None.

**The rules** (written to match ``torch.testing.assert_close``):

* Tensors: same shape; same dtype unless ``check_dtype=False`` (then both are promoted to a common
  dtype, as torch does). Integers and bools compare exactly, whatever the tolerances. Floating and
  complex values pass where ``|actual - expected| <= atol + rtol * |expected|``. An omitted ``rtol`` or
  ``atol`` takes ``assert_close``'s default for the dtypes (the looser of the two): float16 1e-3/1e-5,
  bfloat16 1.6e-2/1e-5, float32 1.3e-6/1e-5, float64 1e-7/1e-7 (``DEFAULT_TOLERANCES``).
* NaN: ``equal_nan=False`` (the default, as in torch) makes NaN unequal to everything, NaN included;
  ``equal_nan=True`` lets NaN match NaN. inf matches an inf of the same sign only.
* Numbers (``check_scalar``, ``kind="scalar"``): a Python int or float, a NumPy number or a one-element
  tensor. Two integers compare exactly; otherwise as float64 (default rtol 1e-7, atol 1e-7).
* Only plain tensors are compared: on the CPU, strided (not sparse, nested or quantized), of a usual
  dtype (bool, integers, float16/bfloat16/32/64, complex64/128). Anything else fails with a sentence
  naming its device, layout or dtype, never a crash.
* Hidden tests (``reveal=False``) say what is wrong with the learner's value without revealing the
  expected shape, dtype or values.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

#: assert_close's default (rtol, atol) per dtype; other dtypes (integers, bool) compare exactly
DEFAULT_TOLERANCES = {
    torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7), torch.complex64: (1.3e-6, 1e-5), torch.complex128: (1e-7, 1e-7),
}
#: the dtypes the checks compare (others fail with a message naming the dtype)
DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16,
          torch.uint32, torch.uint64, *DEFAULT_TOLERANCES)
_UNSIGNED_WIDE = (torch.uint16, torch.uint32, torch.uint64)
_WHAT, _PROBLEM = "__what__", "__problem__"

NAN_ADVICE = ("NaN often comes from log(0), 0/0 or the square root of a negative number: clamp the input "
              "(e.g. torch.clamp(p, min=1e-12)) or use a stable form (torch.log1p, torch.logsumexp, F.logsigmoid).")
INF_ADVICE = ("inf comes from an overflow (exp of a large number) or a division by zero: use a numerically "
              "stable form (e.g. 1 / (1 + exp(-x)) instead of exp(x) / (1 + exp(x)), or torch.logsumexp).")


# ---------------------------------------------------------------- describing values


def describe(value) -> str:
    """A short name for what a value is, for messages (never fails, never shows internals).

        >>> describe([1, 2])
        'a list of length 2'
    """
    try:
        if value is None:
            return "None (did your function forget to `return`?)"
        if _is_marker(value, _WHAT):
            return value[_WHAT]
        if _is_marker(value, _PROBLEM):
            return "a value that could not be checked"
        if isinstance(value, torch.Tensor):
            where = "" if value.device.type == "cpu" else f" on the {value.device} device"
            layout = "" if value.layout == torch.strided else f" with layout {value.layout}"
            return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}{where}{layout}"
        if isinstance(value, (list, tuple)):
            return f"a {type(value).__name__} of length {len(value)}"
        if isinstance(value, dict):
            return f"a dict with {len(value)} keys"
        if isinstance(value, type):
            return f"the class {value.__name__} itself (not an instance of it)"
        if isinstance(value, nn.Module):
            return f"an nn.Module ({type(value).__name__})"
        module = type(value).__module__
        name = type(value).__name__ if module == "builtins" else f"{module}.{type(value).__name__}"
        if module == "numpy" and hasattr(value, "shape") and getattr(value, "ndim", 0):
            return f"a {name} of shape {tuple(value.shape)} and dtype {value.dtype}"
        if callable(value):
            return f"a function ({getattr(value, '__name__', name)}), not its result: did you forget to call it?"
        text = repr(value)
        return f"a {name} ({text[:40]}{'…' if len(text) > 40 else ''})"
    except Exception:
        return f"a {type(value).__name__}"


def what(text: str) -> dict:
    """The recorded stand-in for a value that is not of the kind asked for (``describe`` shows ``text``)."""
    return {_WHAT: str(text)[:300]}


def problem_marker(sentence: str) -> dict:
    """The recorded stand-in for a value with a defect stated in full; ``{name}`` is filled in by the judge."""
    return {_PROBLEM: str(sentence)[:500]}


def _is_marker(value, key: str) -> bool:
    return isinstance(value, dict) and set(value) == {key} and isinstance(value[key], str)


def _stated(value, name: str) -> str:
    return value[_PROBLEM].replace("{name}", name)


def format_number(x, dtype: torch.dtype | None = None) -> str:
    """A number in the fewest digits that still read back as that number in its dtype.

        >>> format_number(0.1 + 0.2), format_number(torch.tensor(0.1).item(), torch.float32)
        ('0.30000000000000004', '0.1')
    """
    if isinstance(x, complex):
        return f"({format_number(x.real, dtype)}{'+' if x.imag >= 0 or math.isnan(x.imag) else '-'}"\
               f"{format_number(abs(x.imag), dtype)}j)"
    if not isinstance(x, float) or not math.isfinite(x):
        return str(x)
    if dtype in (torch.float16, torch.bfloat16, torch.float32, torch.complex64):
        real = torch.float32 if dtype == torch.complex64 else dtype
        for digits in range(1, 10):
            text = f"{x:.{digits}g}"
            if torch.tensor(float(text), dtype=real).item() == x:
                return text if any(c in text for c in ".e") else text + ".0"
    return repr(x)


def _pair(a, b, dtype_a=None, dtype_b=None) -> tuple[str, str]:
    """Two numbers as text, with enough digits that different numbers never read the same."""
    left, right = format_number(a, dtype_a), format_number(b, dtype_b)
    if left == right and a != b:
        left, right = repr(a), repr(b)
    return left, right


def with_hint(message: str, hint: str | None) -> str:
    """``message`` followed by a line ``Hint: ...`` when there is a hint."""
    return f"{message}\nHint: {hint}" if hint else message


# ---------------------------------------------------------------- answers: the plain form both sides judge


def plain_tensor(value: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous CPU copy of ``value`` as a plain ``torch.Tensor`` (no subclass, no graph)."""
    with torch.no_grad():
        copy = value.detach().cpu().resolve_conj().resolve_neg().as_subclass(torch.Tensor)
        return copy.clone(memory_format=torch.contiguous_format)


def _tensor_answer(value: torch.Tensor):
    """A plain copy of a tensor, or a problem marker naming its device, layout or dtype."""
    try:
        if value.is_nested:
            return problem_marker("{name} is a nested tensor: return an ordinary tensor (torch.stack or torch.cat).")
        if value.layout != torch.strided:
            return problem_marker(f"{{name}} is a tensor with layout {value.layout}: the checks compare ordinary "
                                  "(strided) tensors; convert it with .to_dense().")
        if value.device.type == "meta":
            return problem_marker("{name} is a tensor on the meta device, which has a shape but no values: "
                                  "create it without device='meta'.")
        if value.device.type != "cpu":
            return problem_marker(f"{{name}} is on the {value.device} device: the checks and the grader work on "
                                  "the CPU; return it with .cpu().")
        if value.is_quantized:
            return problem_marker("{name} is a quantized tensor: return it with .dequantize().")
        if value.dtype not in DTYPES:
            return problem_marker(f"{{name}} has dtype {value.dtype}, which the checks do not compare: "
                                  "convert it, e.g. with .float().")
        return plain_tensor(value)
    except Exception as error:
        return problem_marker(f"{{name}} is a tensor that cannot be read ({type(error).__name__}).")


def _tree(value, tensors_only: bool, depth: int = 0):
    """Plain data for ``value``: tensors, None, bool, int, float, complex, str, lists and str-keyed dicts."""
    if isinstance(value, torch.Tensor):
        return _tensor_answer(value)
    if value is None or type(value) in (bool, int, float, complex, str):
        return value
    if _is_marker(value, _WHAT) or _is_marker(value, _PROBLEM):  # already plain: answer() is idempotent
        return dict(value)
    if type(value).__module__ == "numpy" and not getattr(value, "ndim", 1):  # a NumPy scalar: its Python value
        item = value.item()
        return item if type(item) in (bool, int, float, complex, str) else what(describe(value))
    for plain in (int, float, complex, str):  # subclasses of the built-ins (they could redefine __eq__)
        if isinstance(value, plain):
            return plain(value)
    if depth > 20:
        return what("a value nested too deeply")
    if isinstance(value, (list, tuple)):
        return [_tree(v, tensors_only, depth + 1) for v in value]
    if isinstance(value, dict) and not tensors_only:
        return {str(k): _tree(v, tensors_only, depth + 1) for k, v in value.items()}
    return what(describe(value))


def as_number(value):
    """``value`` as a Python int or float when it is one (or a one-element tensor or NumPy number), else None.

        >>> as_number(torch.tensor([2.5])), as_number("2.5"), as_number(True)
        (2.5, None, None)
    """
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int) or isinstance(value, float):
            return int(value) if isinstance(value, int) else float(value)
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                return None
            plain = _tensor_answer(value)
            if not isinstance(plain, torch.Tensor) or plain.numel() != 1 or plain.dtype == torch.bool:
                return None
            number = plain.item()
        elif type(value).__module__ == "numpy" and getattr(value, "size", 0) == 1 and value.dtype.kind in "iuf":
            number = value.item()
        else:
            return None
        return number if type(number) in (int, float) else None
    except Exception:
        return None


def module_summary(module: nn.Module, sample_input=None) -> dict:
    """Leaf layers as [type name, parameter shapes], parameter count, state_dict, output (shape) on a sample.

        >>> module_summary(nn.Linear(3, 2))["n_params"]
        8
    """
    layers = [[type(m).__name__, [list(p.shape) for p in m.parameters(recurse=False)]]
              for m in module.modules() if not list(m.children())]
    summary = {"layers": layers, "n_params": int(sum(p.numel() for p in module.parameters())),
               "output_shape": None, "output": None,
               "state_dict": {str(k): _tree(v, True) for k, v in module.state_dict().items()}}
    if sample_input is not None:
        with torch.no_grad():
            out = module(sample_input)
        summary["output_shape"] = list(out.shape) if isinstance(out, torch.Tensor) else describe(out)
        summary["output"] = _tree(out, True) if isinstance(out, torch.Tensor) else None
    return summary


def _module_answer(value, sample_input=None):
    if not isinstance(value, nn.Module):
        return what(describe(value))
    try:
        summary = module_summary(value)
    except Exception as error:
        return problem_marker(f"{{name}} cannot be inspected ({type(error).__name__}: {str(error)[:200]}).")
    if sample_input is None:
        return summary
    try:
        with torch.no_grad():
            out = value(sample_input)
    except Exception as error:
        shape = tuple(sample_input.shape) if isinstance(sample_input, torch.Tensor) else describe(sample_input)
        return problem_marker(f"calling {{name}} on a sample input of shape {shape} failed with "
                              f"{type(error).__name__}: {str(error)[:200]}")
    summary["output_shape"] = list(out.shape) if isinstance(out, torch.Tensor) else describe(out)
    summary["output"] = _tree(out, True) if isinstance(out, torch.Tensor) else None
    return summary


def _grad_answer(value):
    if not isinstance(value, torch.Tensor):
        return what(describe(value))
    try:
        grad, requires_grad, is_leaf = value.grad, value.requires_grad, value.is_leaf
    except Exception as error:
        return problem_marker(f"{{name}}.grad cannot be read ({type(error).__name__}).")
    if grad is None:
        why = ("it does not require gradients: create it with requires_grad=True (or call .requires_grad_()) "
               "before computing with it" if not requires_grad else
               "it is not a leaf tensor: use the tensor you created, not one computed from it" if not is_leaf else
               "backward() was not called on a result computed from it")
        return problem_marker(f"{{name}}.grad is None: {why}.")
    plain = _tensor_answer(grad)
    return problem_marker(plain[_PROBLEM].replace("{name}", "{name}.grad")) if _is_marker(plain, _PROBLEM) else plain


def answer(kind: str, value, **options):
    """The plain form of a learner's ``value`` for a record of ``kind`` (what ``record`` stores).

        >>> answer("scalar", numpy.float32(0.5)), answer("tensor", [torch.ones(1, requires_grad=True)])
        (0.5, [tensor([1.])])
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind == "scalar":
                number = as_number(value)
                return what(describe(value)) if number is None else number
            if kind == "module":
                return _module_answer(value, options.get("sample_input"))
            if kind == "grad":
                return _grad_answer(value)
            if kind == "grad_fn":
                return [_tree(value, True)] if isinstance(value, torch.Tensor) else (
                    _tree(value, True) if isinstance(value, (list, tuple)) else what(describe(value)))
            if kind == "classifier":
                if not isinstance(value, dict):
                    return what(describe(value))
                return {str(k): _tree(v, True) for k, v in value.items()}
            return _tree(value, tensors_only=kind == "tensor")
        except Exception as error:  # a hostile object (broken __len__, __iter__, ...): describe, never crash
            return what(f"a {type(value).__name__} that cannot be read ({type(error).__name__})")


# ---------------------------------------------------------------- tensors


def tolerances(dtype_a: torch.dtype, dtype_b: torch.dtype, rtol=None, atol=None) -> tuple[float, float]:
    """The (rtol, atol) used for two dtypes: each omitted one is assert_close's (looser) default.

        >>> tolerances(torch.float32, torch.float32), tolerances(torch.float32, torch.float64, atol=0.0)
        ((1.3e-06, 1e-05), (1.3e-06, 0.0))
    """
    defaults = [DEFAULT_TOLERANCES.get(dtype, (0.0, 0.0)) for dtype in (dtype_a, dtype_b)]
    return (max(d[0] for d in defaults) if rtol is None else float(rtol),
            max(d[1] for d in defaults) if atol is None else float(atol))


def _exact(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex)


def _common(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    if a == b:
        return a
    return torch.promote_types(torch.int64 if a in _UNSIGNED_WIDE else a, torch.int64 if b in _UNSIGNED_WIDE else b)


def _matches(got: torch.Tensor, want: torch.Tensor, rtol, atol, equal_nan: bool):
    """Element-wise closeness (a bool tensor) and the (rtol, atol) used."""
    common = _common(got.dtype, want.dtype)
    if _exact(common):
        if got.dtype == want.dtype:
            return got == want, 0.0, 0.0
        wrapped = [t.dtype == torch.uint64 and t.to(torch.int64) < 0 for t in (got, want)]  # >= 2**63
        same = got.to(torch.int64) == want.to(torch.int64)
        for w in wrapped:
            same = same & ~w if isinstance(w, torch.Tensor) else same
        return same, 0.0, 0.0
    rtol, atol = tolerances(got.dtype, want.dtype, rtol, atol)
    a, b = got.to(common), want.to(common)
    if common.is_complex and equal_nan:  # torch.isclose refuses equal_nan for complex inputs
        return torch.isclose(a, b, rtol=rtol, atol=atol) | (a.isnan() & b.isnan()), rtol, atol
    return torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan), rtol, atol


def expected_tensor(expected) -> torch.Tensor:
    """The expected value of a tensor check as a plain tensor (a test-cell error if it cannot be one)."""
    plain = _tensor_answer(expected if isinstance(expected, torch.Tensor) else torch.as_tensor(expected))
    if not isinstance(plain, torch.Tensor):
        raise TypeError("The expected value of this check is not a plain CPU tensor: "
                        + _stated(plain, "it") + " (this is a bug in the test cell, not in your answer)")
    return plain


def _not_a_tensor(value, name: str) -> str:
    advice = ""
    if isinstance(value, list):
        advice = " Build a tensor with torch.tensor(...) (or torch.stack(...) for a list of tensors)."
    elif _is_marker(value, _WHAT) and value[_WHAT].startswith("a numpy."):
        advice = " You returned NumPy: convert it with torch.from_numpy(...) (or compute with torch throughout)."
    elif isinstance(value, (int, float, complex)):
        advice = " You returned a Python number: return the tensor itself (no .item() here)."
    return f"{name} should be a tensor, but it is {describe(value)}.{advice}"


def _shape_advice(got: torch.Size, want: torch.Size) -> str:
    if len(want) == 0 and got.numel() == 1:
        return " A 1-element tensor is not a 0-d tensor: use .squeeze() or .reshape(()) (a .sum() or .mean() over all elements gives one)."
    if len(got) == 0 and want.numel() == 1:
        return " A 0-d tensor is not a 1-element tensor: use .reshape(1) or .unsqueeze(0)."
    if sorted(got) == sorted(want):
        return " The dimensions are in another order: transposed (.T, .permute) or the wrong axis (dim=...)?"
    if len(got) != len(want):
        return (" A different number of dimensions: the wrong axis (dim=...), keepdim=True missing, "
                "or a .squeeze()/.unsqueeze() needed?")
    if got.numel() == want.numel():
        return " The same number of elements in another shape: check your reshape/view."
    return " Check the axis (dim=...) you reduce, concatenate or index over."


def _dtype_advice(got: torch.dtype, want: torch.dtype | None) -> str:
    if want is None:  # a hidden test: say nothing about the expected dtype
        return " float64 usually comes from NumPy or Python floats: is it the dtype the task asks for?" \
            if got == torch.float64 else ""
    if got == torch.float64 and want.is_floating_point:
        return f" float64 usually comes from NumPy or Python floats: create tensors with dtype={want} or convert with .to({want})."
    if want.is_floating_point and _exact(got):
        return f" Integer or bool tensors need converting: use .to({want}) (or .float()), or pass dtype=... when you create it."
    if want == torch.int64 and got.is_floating_point:
        return " Integer results (labels, indices, counts) are int64: use .long(), or argmax, which gives int64."
    return f" Convert it with .to({want})."


def tensor_problem(actual, expected, *, rtol: float | None = None, atol: float | None = None,
                   equal_nan: bool = False, check_dtype: bool = True, check_device: bool = False,
                   name: str = "result", reveal: bool = True, **_) -> str | None:
    """What is wrong with ``actual`` compared with ``expected`` (None when they match).

        >>> tensor_problem(torch.ones(2), torch.ones(2)) is None
        True

    ``actual`` may be raw or its ``answer("tensor", ...)``: the result is the same. With ``reveal=False``
    the message names what is wrong with ``actual`` but no expected shape, dtype or value. Every answer
    must be a CPU tensor (``check_device`` is kept for compatibility).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = answer("tensor", actual)
        if _is_marker(got, _PROBLEM):
            return _stated(got, name)
        if not isinstance(got, torch.Tensor):
            return _not_a_tensor(got, name)
        want = expected_tensor(expected)
        if got.shape != want.shape:
            if not reveal:
                return f"{name} has shape {tuple(got.shape)}; the expected shape differs."
            return (f"{name} has shape {tuple(got.shape)}, expected shape {tuple(want.shape)}."
                    + _shape_advice(got.shape, want.shape))
        if check_dtype and got.dtype != want.dtype:
            if not reveal:
                return f"{name} has dtype {got.dtype}; the expected dtype differs." + _dtype_advice(got.dtype, None)
            return f"{name} has dtype {got.dtype}, expected {want.dtype}." + _dtype_advice(got.dtype, want.dtype)
        close, rtol, atol = _matches(got, want, rtol, atol, equal_nan)
        if bool(close.all()):
            return None
        return _values_problem(got, want, ~close, rtol, atol, name, reveal)


def _values_problem(got, want, bad, rtol, atol, name, reveal) -> str:
    n = bad.numel()
    if got.is_floating_point() or got.is_complex():
        nonfinite = bad & ~torch.isfinite(got) & torch.isfinite(want.to(got.dtype))
        if bool(nonfinite.any()):
            index = tuple(int(i) for i in nonfinite.nonzero()[0])
            g = got[index].item()
            at = f" at index {index}" if index else ""
            return (f"{name} contains NaN or inf where finite values are expected ({int(nonfinite.sum())} of {n} "
                    f"elements), the first{at}: {g}. " + (NAN_ADVICE if math.isnan(abs(g)) else INF_ADVICE))
    index = tuple(int(i) for i in bad.nonzero()[0])
    g, w = got[index].item(), want[index].item()
    at = f" at index {index}" if index else ""
    count = f"{int(bad.sum())} of {n} elements differ" if n > 1 else "its value differs"
    if not reveal:
        return (f"{name} has the wrong values: {count}, the first{at} (yours there: "
                f"{format_number(g, got.dtype)}; allowed tolerance: rtol={rtol:g}, atol={atol:g}).")
    left, right = _pair(g, w, got.dtype, want.dtype)
    if _exact(got.dtype) and _exact(want.dtype):
        detail = "integers and bools must match exactly"
    else:
        detail = _tolerance_detail(g, w, rtol, atol)
    advice = ""
    if n > 1 and got.dtype == want.dtype and (got.is_floating_point() or got.is_complex()) and bool((got == -want).all()):
        advice = " Every value has the opposite sign: check the sign of your formula or update."
    return f"{name} has the wrong values: {count}. First{at}: got {left}, expected {right} ({detail}).{advice}"


def _tolerance_detail(g, w, rtol, atol) -> str:
    if not (math.isfinite(abs(g)) and math.isfinite(abs(w))):
        return f"rtol={rtol:g}, atol={atol:g}"
    diff, allowed = abs(g - w), atol + rtol * abs(w)
    digits = 3
    while f"{diff:.{digits}g}" == f"{allowed:.{digits}g}" and digits < 17:
        digits += 1
    return f"off by {diff:.{digits}g}, allowed {allowed:.{digits}g} = atol {atol:g} + rtol {rtol:g} × |expected|"


# ---------------------------------------------------------------- numbers, plain values, sequences


def scalar_problem(actual, expected, *, rtol: float | None = None, atol: float | None = None,
                   equal_nan: bool = False, name: str = "result", reveal: bool = True, **_) -> str | None:
    """What is wrong with a number (None when it is close enough; see the module docstring).

        >>> scalar_problem(2.0, 3.0)
        'result is 2.0, expected 3.0 (off by 1, allowed 4e-07 = atol 1e-07 + rtol 1e-07 × |expected|).'
    """
    number = as_number(actual)
    if number is None:
        advice = ""
        if isinstance(actual, torch.Tensor) or (_is_marker(actual, _WHAT) and "shape" in actual[_WHAT]):
            advice = " Reduce it to one value first (e.g. .sum() or .mean()), then .item() gives a Python number."
        return f"{name} should be a number (or a one-element tensor), but it is {describe(actual)}.{advice}"
    want = as_number(expected)
    if want is None:
        raise TypeError(f"The expected value of this check is not a number but {describe(expected)} "
                        "(this is a bug in the test cell, not in your answer).")
    if type(number) is int and type(want) is int:
        if number == want:
            return None
        return f"{name} is {number}, expected {want}." if reveal else f"{name} is {number}, not the expected value."
    a, b = _as_float(number), _as_float(want)
    rtol, atol = tolerances(torch.float64, torch.float64, rtol, atol)
    if a == b or (equal_nan and math.isnan(a) and math.isnan(b)):
        return None
    diff = abs(a - b)
    if math.isfinite(diff) and diff <= atol + rtol * abs(b):
        return None
    if not math.isfinite(a) and math.isfinite(b):
        return f"{name} is {a}, not a finite number. " + (NAN_ADVICE if math.isnan(a) else INF_ADVICE)
    if not reveal:
        return (f"{name} is {format_number(a)}, which is not within the allowed tolerance of the expected value "
                f"(rtol={rtol:g}, atol={atol:g}).")
    left, right = _pair(a, b)
    return f"{name} is {left}, expected {right} ({_tolerance_detail(a, b, rtol, atol)})."


def _as_float(number) -> float:
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _plain_equal(a, b) -> bool:
    if _is_marker(a, _WHAT) or _is_marker(a, _PROBLEM) or _is_marker(b, _WHAT) or _is_marker(b, _PROBLEM):
        return False
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(_matches(a, b, 0.0, 0.0, True)[0].all()))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_plain_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_plain_equal(a[k], b[k]) for k in a)
    if type(a) is float and type(b) is float and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _short(value) -> str:
    if value is None or type(value) in (bool, int, float, complex, str):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return describe(value)


def value_problem(actual, expected, *, name: str = "result", reveal: bool = True, **_) -> str | None:
    """What differs between two plain values compared exactly (same type, same value; NaN equals NaN).

        >>> value_problem("ValueError", "no error")
        "result is 'ValueError', expected 'no error'."
    """
    got, want = answer("value", actual), answer("value", expected)
    if _plain_equal(got, want):
        return None
    advice = ""
    if type(want) in (int, float) and isinstance(got, torch.Tensor):
        advice = " Use .item() to turn a one-element tensor into a Python number."
    if reveal:
        return f"{name} is {_short(got)}, expected {_short(want)}.{advice}"
    return f"{name} is {_short(got)}, which is not the expected value.{advice}"


def sequence_problem(actual, expected: list, *, name: str = "result", reveal: bool = True, **rule) -> str | None:
    """Element by element, each by the kind of its expected value (see ``by_expected``)."""
    got = answer("tensor", actual)
    if not isinstance(got, list) or len(got) != len(expected):
        return f"{name} should be a list of {len(expected)} values, but it is {describe(got)}."
    for i, (g, w) in enumerate(zip(got, expected)):
        problem = by_expected(g, w, name=f"element {i} of {name}", reveal=reveal, **rule)
        if problem:
            return problem
    return None


def by_expected(actual, expected, *, name: str = "result", reveal: bool = True, **rule) -> str | None:
    """The rule of a ``"tensor"`` record, chosen by the expected value: a tensor, a list (element-wise), a
    number (as ``scalar_problem``), None (must be None) or another plain value (exactly)."""
    if expected is None:
        got = answer("tensor", actual)
        return None if got is None else f"{name} should be None, but it is {describe(got)}."
    if isinstance(expected, (list, tuple)):
        return sequence_problem(actual, list(expected), name=name, reveal=reveal, **rule)
    if isinstance(expected, torch.Tensor):
        return tensor_problem(actual, expected, name=name, reveal=reveal, **rule)
    if type(expected) in (int, float):
        return scalar_problem(answer("tensor", actual), expected, name=name, reveal=reveal, **rule)
    return value_problem(actual, expected, name=name, reveal=reveal)


# ---------------------------------------------------------------- modules and gradients


def module_summary_problem(got, expected: dict, *, reveal: bool = True) -> str | None:
    """What differs between two module summaries: layer types, parameter shapes, count, output shape.

        >>> module_summary_problem(module_summary(nn.ReLU()), module_summary(nn.Tanh()))
        "layer types are ['ReLU'], expected ['Tanh']"

    An expected entry of None (or a layer's parameter shapes of None) is not checked.
    """
    if not isinstance(got, dict) or not isinstance(got.get("layers"), list):
        return f"expected an nn.Module, but got {describe(got)}"
    if expected.get("layers") is not None:
        got_types = [layer[0] for layer in got["layers"]]
        want_types = [layer[0] for layer in expected["layers"]]
        if got_types != want_types:
            return f"layer types are {got_types}, expected {want_types}" if reveal else "the layer types differ"
        for (kind, got_shapes), (_, want_shapes) in zip(got["layers"], expected["layers"]):
            if want_shapes is not None and got_shapes != want_shapes:
                return (f"a {kind} layer has parameter shapes {got_shapes}, expected {want_shapes}" if reveal
                        else f"the parameter shapes of a {kind} layer differ")
    if expected.get("n_params") is not None and got.get("n_params") != expected["n_params"]:
        return (f"it has {got.get('n_params')} parameters, expected {expected['n_params']}" if reveal
                else f"it has {got.get('n_params')} parameters; the expected count differs")
    if expected.get("output_shape") is not None and got.get("output_shape") != expected["output_shape"]:
        return (f"the output has shape {got.get('output_shape')}, expected {expected['output_shape']}" if reveal
                else f"the output has shape {got.get('output_shape')}; the expected shape differs")
    return None


def module_problem(value, expected: dict, *, name: str = "your module", reveal: bool = True, **_) -> str | None:
    """What is wrong with a module's ``answer("module", ...)`` compared with an expected summary."""
    if _is_marker(value, _PROBLEM):
        return _stated(value, name) + "."
    if not isinstance(value, dict) or not isinstance(value.get("layers"), list):
        advice = (" Create an instance by calling the class." if "the class" in describe(value)
                  else " Did you subclass nn.Module and return an instance?")
        return f"{name} should be an nn.Module, but it is {describe(value)}.{advice}"
    problem = module_summary_problem(value, expected, reveal=reveal)
    return None if problem is None else f"{name} is not as expected: {problem}."


def grad_problem(value, expected, *, name: str = "x", **rule) -> str | None:
    """What is wrong with a tensor's gradient, given its ``answer("grad", tensor)``."""
    if _is_marker(value, _PROBLEM):
        return _stated(value, name)
    if not isinstance(value, torch.Tensor):
        return f"{name} should be a tensor, but it is {describe(value)}."
    return tensor_problem(value, expected, name=f"{name}.grad", **rule)


def grad_fn_problem(value, expected: list, *, numeric: list | None = None, rtol: float = 1e-4, atol: float = 1e-6,
                    numeric_rtol: float = 1e-3, numeric_atol: float = 1e-5, name: str = "your gradient",
                    reveal: bool = True, **_) -> str | None:
    """What is wrong with the gradients a learner's function returned, against autograd and finite differences."""
    if _is_marker(value, _PROBLEM):
        return _stated(value, name)
    if not isinstance(value, list) or len(value) != len(expected):
        returned = f"{len(value)} values" if isinstance(value, list) else describe(value)
        return (f"{name} should return {len(expected)} gradient tensor(s), one per input, "
                f"but it returned {returned}.")
    for i, (got, want) in enumerate(zip(value, expected)):
        label = name if len(expected) == 1 else f"{name} for input {i}"
        problem = tensor_problem(got, want, rtol=rtol, atol=atol, check_dtype=False, name=label, reveal=reveal)
        if problem:
            return problem + " (compared with autograd)"
        if numeric is not None:
            problem = tensor_problem(got, numeric[i], rtol=numeric_rtol, atol=numeric_atol, check_dtype=False,
                                     name=label, reveal=reveal)
            if problem:
                return problem + " (compared with finite differences)"
    return None


# ---------------------------------------------------------------- one entry point for both sides


#: record kind -> its rule (``classifier`` is judged by the grader only: course_utils.grading.classifier)
JUDGES = {"tensor": by_expected, "scalar": scalar_problem, "value": value_problem,
          "module": module_problem, "grad": grad_problem, "grad_fn": grad_fn_problem}
KINDS = (*JUDGES, "classifier")


def judge(kind: str, value, expected, *, reveal: bool = True, hint: str | None = None, **rule) -> str | None:
    """The verdict on an answer (raw or recorded): None when it passes, else what is wrong (plus the hint).

        >>> judge("scalar", numpy.float32(2.0), 2.0) is None
        True
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = JUDGES[kind](value, expected, reveal=reveal, **rule)
    return with_hint(problem, hint) if problem else None
