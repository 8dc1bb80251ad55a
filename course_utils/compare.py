"""How the course compares a learner's answer with an expected one: one rule for both sides.

    >>> tensor_problem(torch.ones(2), torch.ones(3))
    'result has shape (2,), expected shape (3,). ...'

The learner's checks (``course_utils.checks``, in the learner's kernel) and the grader's trusted verdicts
(``course_utils.grading.pipeline.verdicts``, in the grader's own process) both go through the same two steps:

1. ``answer(kind, value)`` (``course_utils.answers``) turns the learner's raw value into plain data
   (detached CPU tensors, Python numbers, strings, lists, dicts). This is what ``record`` stores and what
   the checks judge, so the grader judges exactly what the learner's check judged.
2. ``judge(kind, value, expected, **rule)`` (here) says what is wrong, in a sentence, or returns None.

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
* Trained networks (``check_classifier``, ``kind="classifier"``): ``course_utils.classifier`` rebuilds the
  network from its layer list (or the prescribed architecture), checks the spec and measures test accuracy.
* Hidden tests (``reveal=False``) say what is wrong with the learner's value without revealing the
  expected shape, dtype or values.

Where torch itself does something else: ``torch.isclose`` refuses ``equal_nan=True`` for complex tensors
(here NaN matches NaN there too), and ``assert_close`` wraps uint64 values of 2**63 and more to negative
int64 when the other tensor has another dtype (here they compare as the numbers they are).
"""

from __future__ import annotations

import math
import warnings

import torch

from course_utils.answers import (
    DTYPES,
    answer,
    as_number,
    describe,
    is_problem,
    is_what,
    module_summary,
    plain_tensor,
    stated,
)
from course_utils.classifier import classifier_problem

__all__ = [
    "DEFAULT_TOLERANCES",
    "DTYPES",
    "KINDS",
    "JUDGES",
    "answer",
    "as_number",
    "by_expected",
    "describe",
    "expected_tensor",
    "format_number",
    "grad_fn_problem",
    "grad_problem",
    "judge",
    "module_problem",
    "module_summary",
    "module_summary_problem",
    "plain_tensor",
    "scalar_problem",
    "sequence_problem",
    "tensor_problem",
    "tolerances",
    "trained_classifier_problem",
    "value_problem",
    "with_hint",
]

#: assert_close's default (rtol, atol) per dtype; other dtypes (integers, bool) compare exactly
DEFAULT_TOLERANCES = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-7),
}
_UNSIGNED_WIDE = (torch.uint16, torch.uint32, torch.uint64)

NAN_ADVICE = (
    "NaN often comes from log(0), 0/0 or the square root of a negative number: clamp the input "
    "(e.g. torch.clamp(p, min=1e-12)) or use a stable form (torch.log1p, torch.logsumexp, F.logsigmoid)."
)
INF_ADVICE = (
    "inf comes from an overflow (exp of a large number) or a division by zero: use a numerically "
    "stable form (e.g. 1 / (1 + exp(-x)) instead of exp(x) / (1 + exp(x)), or torch.logsumexp)."
)


# ---------------------------------------------------------------- numbers as text


def format_number(x, dtype: torch.dtype | None = None) -> str:
    """A number in the fewest digits that still read back as that number in its dtype.

    >>> format_number(0.1 + 0.2), format_number(torch.tensor(0.1).item(), torch.float32)
    ('0.30000000000000004', '0.1')
    """
    if isinstance(x, complex):
        return (
            f"({format_number(x.real, dtype)}{'+' if x.imag >= 0 or math.isnan(x.imag) else '-'}"
            f"{format_number(abs(x.imag), dtype)}j)"
        )
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


# ---------------------------------------------------------------- tensors


def tolerances(dtype_a: torch.dtype, dtype_b: torch.dtype, rtol=None, atol=None) -> tuple[float, float]:
    """The (rtol, atol) the rule uses for two dtypes: (0, 0) when both are integers or bools (exact);
    otherwise each omitted one is assert_close's default (the looser of the two dtypes').

        >>> tolerances(torch.float32, torch.float32), tolerances(torch.int64, torch.int64, rtol=0.1, atol=1.0)
        ((1.3e-06, 1e-05), (0.0, 0.0))
    """
    if _exact(_common(dtype_a, dtype_b)):
        return 0.0, 0.0
    defaults = [DEFAULT_TOLERANCES.get(dtype, (0.0, 0.0)) for dtype in (dtype_a, dtype_b)]
    return (
        max(d[0] for d in defaults) if rtol is None else float(rtol),
        max(d[1] for d in defaults) if atol is None else float(atol),
    )


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
    plain = answer("tensor", expected if isinstance(expected, torch.Tensor) else torch.as_tensor(expected))
    if not isinstance(plain, torch.Tensor):
        raise TypeError(
            "The expected value of this check is not a plain CPU tensor: "
            + stated(plain, "it")
            + " (this is a bug in the test cell, not in your answer)"
        )
    return plain


def _not_a_tensor(value, name: str) -> str:
    advice = ""
    if isinstance(value, list):
        advice = " Build a tensor with torch.tensor(...) (or torch.stack(...) for a list of tensors)."
    elif is_what(value) and describe(value).startswith("a numpy."):
        advice = " You returned NumPy: convert it with torch.from_numpy(...) (or compute with torch throughout)."
    elif isinstance(value, (int, float, complex)):
        advice = " You returned a Python number: return the tensor itself (no .item() here)."
    return f"{name} should be a tensor, but it is {describe(value)}.{advice}"


def _shape_advice(got: torch.Size, want: torch.Size) -> str:
    if len(want) == 0 and got.numel() == 1:
        return (
            " A 1-element tensor is not a 0-d tensor: use .squeeze() or .reshape(()) (a .sum() or .mean() "
            "over all elements gives one)."
        )
    if len(got) == 0 and want.numel() == 1:
        return " A 0-d tensor is not a 1-element tensor: use .reshape(1) or .unsqueeze(0)."
    if sorted(got) == sorted(want):
        return " The dimensions are in another order: transposed (.T, .permute) or the wrong axis (dim=...)?"
    if len(got) != len(want):
        return (
            " A different number of dimensions: the wrong axis (dim=...), keepdim=True missing, "
            "or a .squeeze()/.unsqueeze() needed?"
        )
    if got.numel() == want.numel():
        return " The same number of elements in another shape: check your reshape/view."
    return " Check the axis (dim=...) you reduce, concatenate or index over."


def _dtype_advice(got: torch.dtype, want: torch.dtype | None) -> str:
    if want is None:  # a hidden test: say nothing about the expected dtype
        return (
            " float64 usually comes from NumPy or Python floats: is it the dtype the task asks for?"
            if got == torch.float64
            else ""
        )
    if got == torch.float64 and want.is_floating_point:
        return (
            f" float64 usually comes from NumPy or Python floats: create tensors with dtype={want} or convert "
            f"with .to({want})."
        )
    if want.is_floating_point and _exact(got):
        return (
            f" Integer or bool tensors need converting: use .to({want}) (or .float()), or pass dtype=... "
            "when you create it."
        )
    if want == torch.int64 and got.is_floating_point:
        return " Integer results (labels, indices, counts) are int64: use .long(), or argmax, which gives int64."
    return f" Convert it with .to({want})."


def tensor_problem(
    actual,
    expected,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    check_dtype: bool = True,
    check_device: bool = False,
    name: str = "result",
    reveal: bool = True,
    **_,
) -> str | None:
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
        if is_problem(got):
            return stated(got, name)
        if not isinstance(got, torch.Tensor):
            return _not_a_tensor(got, name)
        want = expected_tensor(expected)
        if got.shape != want.shape:
            if not reveal:
                return f"{name} has shape {tuple(got.shape)}; the expected shape differs."
            return f"{name} has shape {tuple(got.shape)}, expected shape {tuple(want.shape)}." + _shape_advice(
                got.shape, want.shape
            )
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
            return (
                f"{name} contains NaN or inf where finite values are expected ({int(nonfinite.sum())} of {n} "
                f"elements), the first{at}: {g}. " + (NAN_ADVICE if math.isnan(abs(g)) else INF_ADVICE)
            )
    index = tuple(int(i) for i in bad.nonzero()[0])
    g, w = got[index].item(), want[index].item()
    at = f" at index {index}" if index else ""
    count = f"{int(bad.sum())} of {n} elements differ" if n > 1 else "its value differs"
    if not reveal:
        return (
            f"{name} has the wrong values: {count}, the first{at} (yours there: "
            f"{format_number(g, got.dtype)}; allowed tolerance: rtol={rtol:g}, atol={atol:g})."
        )
    left, right = _pair(g, w, got.dtype, want.dtype)
    if _exact(got.dtype) and _exact(want.dtype):
        detail = "integers and bools must match exactly"
    elif _both_nan(g, w):
        detail = NAN_EQUAL
    else:
        detail = _tolerance_detail(g, w, rtol, atol)
    advice = ""
    signed = got.dtype == want.dtype and (got.is_floating_point() or got.is_complex())
    if n > 1 and signed and bool((got == -want).all()):
        advice = " Every value has the opposite sign: check the sign of your formula or update."
    elif signed and not got.is_complex():
        advice = _factor_advice(_factor(got, want), "Every value" if n > 1 else "It")
    return f"{name} has the wrong values: {count}. First{at}: got {left}, expected {right} ({detail}).{advice}"


NAN_EQUAL = (
    "NaN never equals NaN unless the check passes equal_nan=True, which this one does not: a NaN here is an error"
)


def _both_nan(g, w) -> bool:
    return isinstance(g, float) and isinstance(w, float) and math.isnan(g) and math.isnan(w)


def _factor(got: torch.Tensor, want: torch.Tensor) -> float | None:
    """k (or 1/k) when ``got`` is ``want`` times a whole number k >= 2 (or divided by it) everywhere, else None:
    the mark of a gradient accumulated k times or a sum taken for a mean (or the other way round)."""
    try:
        finite = torch.isfinite(got) & torch.isfinite(want)
        if not bool(finite.all()):
            return None
        nonzero = want != 0
        if not bool(nonzero.any()) or bool((got[~nonzero] != 0).any()):
            return None
        ratio = got[nonzero].double() / want[nonzero].double()
        r = float(ratio.median())
        if not bool(((ratio - r).abs() <= 1e-4 * abs(r)).all()):
            return None
        for value in (r, 1 / r if r else 0.0):
            k = round(value)
            if k >= 2 and abs(value - k) <= 1e-4 * k:
                return float(k) if value == r else 1 / k
    except Exception:  # a message must never fail
        return None
    return None


def _factor_advice(factor: float | None, subject: str) -> str:
    """What a value off by a whole factor usually means (``subject``: "Every value" or "It")."""
    if factor is None:
        return ""
    if factor == 2:
        return (
            f" {subject} is doubled (2 times the expected): did the gradient accumulate over two backward() "
            "calls (zero_grad() missing)? Or is it a sum over 2 values where a mean is asked for?"
        )
    if factor > 2:
        k = int(factor)
        return (
            f" {subject} is {k} times the expected: a sum instead of a mean (over {k} values)? Or a gradient "
            f"accumulated over {k} backward() calls (zero_grad() missing)?"
        )
    k = round(1 / factor)
    return f" {subject} is 1/{k} of the expected: a mean instead of a sum (over {k} values)?"


def _tolerance_detail(g, w, rtol, atol) -> str:
    if not (math.isfinite(abs(g)) and math.isfinite(abs(w))):
        return f"rtol={rtol:g}, atol={atol:g}"
    diff, allowed = abs(g - w), atol + rtol * abs(w)
    digits = 3
    while f"{diff:.{digits}g}" == f"{allowed:.{digits}g}" and digits < 17:
        digits += 1
    return f"off by {diff:.{digits}g}, allowed {allowed:.{digits}g} = atol {atol:g} + rtol {rtol:g} × |expected|"


# ---------------------------------------------------------------- numbers, plain values, sequences


def scalar_problem(
    actual,
    expected,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    name: str = "result",
    reveal: bool = True,
    **_,
) -> str | None:
    """What is wrong with a number (None when it is close enough; see the module docstring).

    >>> scalar_problem(2.0, 3.0)
    'result is 2.0, expected 3.0 (off by 1, allowed 4e-07 = atol 1e-07 + rtol 1e-07 × |expected|).'
    """
    number = as_number(actual)
    if number is None:
        advice = ""
        if isinstance(actual, torch.Tensor) or (is_what(actual) and "shape" in describe(actual)):
            advice = " Reduce it to one value first (e.g. .sum() or .mean()), then .item() gives a Python number."
        return f"{name} should be a number (or a one-element tensor), but it is {describe(actual)}.{advice}"
    want = as_number(expected)
    if want is None:
        raise TypeError(
            f"The expected value of this check is not a number but {describe(expected)} "
            "(this is a bug in the test cell, not in your answer)."
        )
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
        return (
            f"{name} is {format_number(a)}, which is not within the allowed tolerance of the expected value "
            f"(rtol={rtol:g}, atol={atol:g})."
        )
    left, right = _pair(a, b)
    if _both_nan(a, b):
        return f"{name} is {left}, expected {right}: {NAN_EQUAL}."
    advice = _factor_advice(
        _factor(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)), "It"
    )
    return f"{name} is {left}, expected {right} ({_tolerance_detail(a, b, rtol, atol)}).{advice}"


def _as_float(number) -> float:
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _plain_equal(a, b) -> bool:
    if is_what(a) or is_problem(a) or is_what(b) or is_problem(b):
        return False
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(_matches(a, b, 0.0, 0.0, True)[0].all())
        )
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
                return (
                    f"a {kind} layer has parameter shapes {got_shapes}, expected {want_shapes}"
                    if reveal
                    else f"the parameter shapes of a {kind} layer differ"
                )
    if expected.get("n_params") is not None and got.get("n_params") != expected["n_params"]:
        return (
            f"it has {got.get('n_params')} parameters, expected {expected['n_params']}"
            if reveal
            else f"it has {got.get('n_params')} parameters; the expected count differs"
        )
    if expected.get("output_shape") is not None and got.get("output_shape") != expected["output_shape"]:
        return (
            f"the output has shape {got.get('output_shape')}, expected {expected['output_shape']}"
            if reveal
            else f"the output has shape {got.get('output_shape')}; the expected shape differs"
        )
    return None


def module_problem(value, expected: dict, *, name: str = "your module", reveal: bool = True, **_) -> str | None:
    """What is wrong with a module's ``answer("module", ...)`` compared with an expected summary."""
    if is_problem(value):
        return stated(value, name) + "."
    if not isinstance(value, dict) or not isinstance(value.get("layers"), list):
        advice = (
            " Create an instance by calling the class."
            if "the class" in describe(value)
            else " Did you subclass nn.Module and return an instance?"
        )
        return f"{name} should be an nn.Module, but it is {describe(value)}.{advice}"
    problem = module_summary_problem(value, expected, reveal=reveal)
    return None if problem is None else f"{name} is not as expected: {problem}."


def grad_problem(value, expected, *, name: str = "x", **rule) -> str | None:
    """What is wrong with a tensor's gradient, given its ``answer("grad", tensor)``."""
    if is_problem(value):
        return stated(value, name)
    if not isinstance(value, torch.Tensor):
        return f"{name} should be a tensor, but it is {describe(value)}."
    return tensor_problem(value, expected, name=f"{name}.grad", **rule)


def grad_fn_problem(
    value,
    expected: list,
    *,
    numeric: list | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    numeric_rtol: float = 1e-3,
    numeric_atol: float = 1e-5,
    name: str = "your gradient",
    reveal: bool = True,
    **_,
) -> str | None:
    """What is wrong with the gradients a learner's function returned, against autograd and finite differences."""
    if is_problem(value):
        return stated(value, name)
    if not isinstance(value, list) or len(value) != len(expected):
        returned = f"{len(value)} values" if isinstance(value, list) else describe(value)
        return f"{name} should return {len(expected)} gradient tensor(s), one per input, but it returned {returned}."
    for i, (got, want) in enumerate(zip(value, expected)):
        label = name if len(expected) == 1 else f"{name} for input {i}"
        problem = tensor_problem(got, want, rtol=rtol, atol=atol, check_dtype=False, name=label, reveal=reveal)
        if problem:
            return problem + " (compared with autograd)"
        if numeric is not None:
            problem = tensor_problem(
                got, numeric[i], rtol=numeric_rtol, atol=numeric_atol, check_dtype=False, name=label, reveal=reveal
            )
            if problem:
                return problem + " (compared with finite differences)"
    return None


# ---------------------------------------------------------------- one entry point for both sides


def constraint_problem(value, expected, *, name: str = "result", reveal: bool = True, **_) -> str | None:
    """What the kernel's constraint check saw: [] when the function kept to its constraints, else why not.
    (The grader also checks the submitted cells themselves: course_utils.grading.pipeline.constraints.)

        >>> constraint_problem(["it calls torch.matmul, which this task forbids"], [])
        'it calls torch.matmul, which this task forbids'
    """
    value = answer("value", value)  # raw or recorded alike (a tuple is recorded as a list)
    if isinstance(value, list) and not value:
        return None
    if isinstance(value, list) and isinstance(value[0], str):
        return value[0]
    return stated(value, name) if is_problem(value) else f"the constraint check recorded {describe(value)}"


def trained_classifier_problem(
    value, expected=None, *, name: str = "the network", reveal: bool = True, **params
) -> str | None:
    """What is wrong with a trained network (``course_utils.classifier``: rebuilt from plain data, checked
    against the spec in ``params``, measured on the test images); ``expected`` is not used.

        >>> trained_classifier_problem(torch.nn.Linear(2, 3), architecture="sequential")[:46]
        'the network cannot be rebuilt by the grader: t'
    """
    return classifier_problem(value, params, name=name)


#: record kind -> its rule
JUDGES = {
    "tensor": by_expected,
    "scalar": scalar_problem,
    "value": value_problem,
    "module": module_problem,
    "grad": grad_problem,
    "grad_fn": grad_fn_problem,
    "constraint": constraint_problem,
    "classifier": trained_classifier_problem,
}
KINDS = tuple(JUDGES)


def judge(kind: str, value, expected, *, reveal: bool = True, hint: str | None = None, **rule) -> str | None:
    """The verdict on an answer (raw or recorded): None when it passes, else what is wrong (plus the hint).

    >>> judge("scalar", numpy.float32(2.0), 2.0) is None
    True
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind in ("scalar", "value") and is_problem(value):  # e.g. a value too large to record
            problem = stated(value, rule.get("name", "result"))
        else:
            problem = JUDGES[kind](value, expected, reveal=reveal, **rule)
    return with_hint(problem, hint) if problem else None
