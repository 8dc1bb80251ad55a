"""Spec for course_utils.compare: the comparison rules are torch's (property-tested against assert_close).

Hypothesis generates tensors of every dtype the checks compare, every small shape (0-d and empty
included), contiguous and strided views, and special values (NaN, ±inf, ±0, subnormals, the dtype's
extremes), with tolerances omitted or given, equal_nan on or off, check_dtype on or off. On each case
``tensor_problem`` must pass exactly when ``torch.testing.assert_close`` passes with the same (resolved)
tolerances. Two documented exceptions are excluded: complex tensors with ``equal_nan=True`` (torch refuses
them) and uint64 values of 2**63 or more compared with another dtype (torch wraps them to negative int64).
"""

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from course_utils.compare import (
    DTYPES,
    answer,
    format_number,
    judge,
    scalar_problem,
    tensor_problem,
    tolerances,
)

pytestmark = pytest.mark.filterwarnings("ignore:Casting complex values to real")
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
COMPLEX = [torch.complex64, torch.complex128]
INTEGERS = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64]
ALL = [torch.bool, *INTEGERS, *FLOATS, *COMPLEX]
#: ten times the profile's examples: 1,000 in make test, 200 in make check (tests/conftest.py)
SCALE = settings().max_examples // 10
PROPERTY = settings(
    max_examples=100 * SCALE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SPECIAL = [0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e-45, 5e-324, 1e-8, 6e4, 3e38, 1.7e308, 0.1]


def integer_range(dtype):
    if dtype == torch.bool:
        return 0, 1
    if dtype == torch.uint64:
        return 0, 2**64 - 1
    info = torch.iinfo(dtype)
    return info.min, info.max


def random_values(dtype, shape, seed: int, scale: int) -> torch.Tensor:
    """Random values of ``dtype``: normal times 10**scale for floats, the whole range for integers."""
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point or dtype.is_complex:
        real = torch.randn(shape, generator=g, dtype=torch.float64) * 10.0**scale
        if dtype.is_complex:
            real = torch.complex(real, torch.randn(shape, generator=g, dtype=torch.float64))
        return real.to(dtype)  # rounds, or overflows to inf, like a cast
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype in (torch.uint64, torch.int64):
        bits = torch.randint(-(2**63), 2**63 - 1, shape, generator=g, dtype=torch.int64)
        return bits.view(dtype) if scale > 0 else (bits % 7 - 3).clamp(min=0 if dtype == torch.uint64 else -3).to(dtype)
    low, high = integer_range(dtype)
    if scale <= 0:
        low, high = max(low, -3), min(high, 3)
    return torch.randint(low, high + 1, shape, generator=g, dtype=torch.int64).to(dtype)


@st.composite
def special_values(draw, t: torch.Tensor, count: int) -> torch.Tensor:
    """``t`` with up to ``count`` elements replaced by special values of its dtype."""
    t = t.clone()
    flat = t.reshape(-1)
    for _ in range(draw(st.integers(0, count)) if flat.numel() else 0):
        i = draw(st.integers(0, flat.numel() - 1))
        if t.is_floating_point() or t.is_complex():
            flat[i] = torch.tensor(draw(st.sampled_from(SPECIAL)), dtype=torch.float64).to(t.dtype)
        else:
            low, high = integer_range(t.dtype)
            flat[i] = torch.tensor(draw(st.sampled_from([low, high, 0, 1])), dtype=t.dtype)
    return t


@st.composite
def strided(draw, t: torch.Tensor) -> torch.Tensor:
    """The same values as ``t``, maybe through a non-contiguous view."""
    how = draw(st.sampled_from(["contiguous", "transposed", "strided", "expanded"]))
    if how == "transposed" and t.dim() >= 2:
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    if how == "strided":
        return torch.stack([t, t], dim=-1)[..., 0]
    if how == "expanded" and t.numel() == 1:
        return t.reshape(()).expand(t.shape)
    return t


def nudge(t: torch.Tensor, i: int, exponent: int, sign: int) -> torch.Tensor:
    """``t`` with element ``i`` moved by a relative 10**exponent (floats) or by one (integers)."""
    out = t.clone()
    flat = out.reshape(-1)
    if t.is_floating_point() or t.is_complex():
        wide = flat[i].to(torch.complex128 if t.is_complex() else torch.float64)
        flat[i] = (wide * (1 + sign * 10.0**exponent) + sign * 10.0 ** (exponent - 2)).to(t.dtype)
    elif t.dtype == torch.bool:
        flat[i] = ~flat[i]
    else:
        low, high = integer_range(t.dtype)
        value = int(flat[i].item())
        flat[i] = torch.tensor(value - 1 if value == high else value + 1, dtype=t.dtype)
    return out


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(ALL))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    base = draw(special_values(random_values(dtype, shape, draw(st.integers(0, 2**32)), draw(st.integers(-8, 8))), 3))
    check_dtype = draw(st.booleans())
    other = draw(st.sampled_from(ALL)) if not check_dtype and draw(st.booleans()) else dtype
    how = draw(st.sampled_from(["same", "nudged", "nudged", "special", "unrelated", "reshaped"]))
    if how == "unrelated" or base.numel() == 0:
        expected = random_values(other, shape, draw(st.integers(0, 2**32)), draw(st.integers(-8, 8)))
    elif how == "reshaped":
        expected = base.to(other).reshape(-1)
    elif how == "special":
        expected = draw(special_values(base.to(other), 2))
    elif how == "nudged":
        expected = nudge(
            base.to(other),
            draw(st.integers(0, base.numel() - 1)),
            draw(st.integers(-9, 0)),
            draw(st.sampled_from([-1, 1])),
        )
    else:
        expected = base.to(other)
    actual = draw(strided(base))
    given_tolerances = draw(
        st.one_of(
            st.just((None, None)),
            st.tuples(
                st.sampled_from([0.0, 1e-7, 1.3e-6, 1e-5, 1e-3, 0.1]), st.sampled_from([0.0, 1e-8, 1e-5, 1e-3, 0.5])
            ),
        )
    )
    return actual, expected, given_tolerances, draw(st.booleans()), check_dtype


def torch_passes(actual, expected, rtol, atol, equal_nan, check_dtype) -> bool:
    """assert_close with the tolerances our rule resolves to (integers and bools: exact)."""
    rtol, atol = tolerances(actual.dtype, expected.dtype, rtol, atol)
    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=equal_nan, check_dtype=check_dtype)
        return True
    except AssertionError:
        return False


def wraps_uint64(actual, expected) -> bool:
    return actual.dtype != expected.dtype and any(
        t.dtype == torch.uint64 and bool((t.to(torch.int64) < 0).any()) for t in (actual, expected)
    )


@PROPERTY
@given(cases())
def test_tensor_problem_passes_exactly_when_assert_close_passes(case):
    actual, expected, (rtol, atol), equal_nan, check_dtype = case
    assume(not (equal_nan and (actual.is_complex() or expected.is_complex())))
    assume(not wraps_uint64(actual, expected))
    ours = tensor_problem(actual, expected, rtol=rtol, atol=atol, equal_nan=equal_nan, check_dtype=check_dtype)
    theirs = torch_passes(actual, expected, rtol, atol, equal_nan, check_dtype)
    event("both pass" if theirs else "both fail")
    assert (ours is None) == theirs, ours


@settings(PROPERTY, max_examples=40 * SCALE)
@given(cases())
def test_the_rule_is_the_same_on_the_recorded_answer(case):
    """Judging the raw answer or its plain recorded form gives the same message, word for word."""
    actual, expected, (rtol, atol), equal_nan, check_dtype = case
    rule = dict(rtol=rtol, atol=atol, equal_nan=equal_nan, check_dtype=check_dtype)
    for reveal in (True, False):
        assert tensor_problem(actual, expected, reveal=reveal, **rule) == tensor_problem(
            answer("tensor", actual), expected, reveal=reveal, **rule
        )


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL),
    st.integers(-(2**63), 2**63),
    st.integers(-10, 10),
)


@PROPERTY
@given(
    numbers,
    numbers,
    st.one_of(st.just((None, None)), st.tuples(st.sampled_from([0.0, 1e-7, 1e-3]), st.sampled_from([0.0, 1e-7, 0.5]))),
    st.booleans(),
)
def test_scalar_problem_passes_exactly_when_assert_close_passes(a, b, given_tolerances, equal_nan):
    rtol, atol = given_tolerances
    ours = scalar_problem(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan) is None
    if type(a) is int and type(b) is int:
        expected_rtol, expected_atol, a_, b_ = 0.0, 0.0, a, b
    else:
        (expected_rtol, expected_atol), a_, b_ = (
            tolerances(torch.float64, torch.float64, rtol, atol),
            float(a),
            float(b),
        )
    try:
        torch.testing.assert_close(a_, b_, rtol=expected_rtol, atol=expected_atol, equal_nan=equal_nan)
        theirs = True
    except AssertionError:
        theirs = False
    assert ours == theirs


@settings(PROPERTY, max_examples=80 * SCALE)
@given(st.sampled_from(FLOATS), st.floats(-1e4, 1e4), st.integers(1, 16), st.sampled_from([-1, 1]), st.booleans())
def test_a_value_message_never_shows_two_different_numbers_as_the_same_text(dtype, a, digits, sign, float64_expected):
    """Values that differ in their k-th digit (k up to 16) still print differently, each readable back."""
    actual = torch.tensor([a], dtype=torch.float64).to(dtype)
    expected = (actual.double() * (1 + sign * 10.0**-digits)).to(torch.float64 if float64_expected else dtype)
    message = tensor_problem(actual, expected, rtol=0.0, atol=0.0, check_dtype=False)
    assume(message is not None)  # the nudge can vanish in rounding
    got, want = re.search(r"got (\S+), expected (\S+) \(", message).groups()
    assert got != want
    assert torch.tensor(float(got), dtype=torch.float64).to(dtype).item() == actual.item()
    assert torch.tensor(float(want), dtype=torch.float64).to(expected.dtype).item() == expected.item()


def test_default_tolerances_are_torchs_and_integers_ignore_given_ones():
    for dtype in DTYPES:
        assert tolerances(dtype, dtype) == torch.testing._comparison.default_tolerances(dtype)
    assert tolerances(torch.float16, torch.float64) == torch.testing._comparison.default_tolerances(
        torch.float16, torch.float64
    )
    assert tolerances(torch.int64, torch.uint8, rtol=0.5, atol=2.0) == (0.0, 0.0)
    assert tolerances(torch.int64, torch.float32, rtol=0.5) == (0.5, 1e-5)


def exotic_dtypes():
    names = sorted(name for name in dir(torch) if isinstance(getattr(torch, name), torch.dtype))
    return [
        getattr(torch, n)
        for n in names
        if getattr(torch, n) not in DTYPES
        and getattr(torch, n)
        not in (
            torch.float,
            torch.double,
            torch.half,
            torch.cfloat,
            torch.cdouble,
            torch.long,
            torch.int,
            torch.short,
            torch.bool,
            torch.chalf,
        )
    ]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dtype", [*exotic_dtypes(), torch.complex32], ids=str)
def test_dtypes_the_checks_do_not_compare_get_a_message_naming_them(dtype):
    try:
        t = torch.zeros(2, dtype=dtype)
        expected = f"has dtype {dtype}, which the checks do not compare"
    except Exception:
        try:
            t = torch.quantize_per_tensor(torch.zeros(2), 0.1, 0, dtype)
            expected = "is a quantized tensor: return it with .dequantize()"
        except Exception:
            pytest.skip(f"torch cannot make a {dtype} tensor on the CPU")
    assert expected in tensor_problem(t, torch.zeros(2))
    assert expected in tensor_problem(answer("tensor", t), torch.zeros(2))


def test_format_number_uses_the_fewest_digits_that_read_back():
    assert format_number(torch.tensor(0.1).item(), torch.float32) == "0.1"
    assert format_number(0.1 + 0.2) == "0.30000000000000004"
    assert format_number(torch.tensor(1.0).item(), torch.float32) == "1.0"
    assert format_number(3) == "3" and format_number(math.nan) == "nan"


@pytest.mark.parametrize(
    "got, want, says",
    [
        (torch.tensor([0.5, 1.0]), torch.tensor([0.25, 0.5]), "doubled (2 times the expected): did the gradient"),
        (torch.tensor([4.0, 8.0, 0.0]), torch.tensor([1.0, 2.0, 0.0]), "4 times the expected: a sum instead of a mean"),
        (torch.tensor([0.25, 0.5]), torch.tensor([1.0, 2.0]), "1/4 of the expected: a mean instead of a sum"),
    ],
)
def test_a_value_off_by_a_whole_factor_names_the_usual_mistake(got, want, says):
    assert says in tensor_problem(got, want)
    assert says.split(":")[0].split("(")[0].strip() not in (tensor_problem(got, want, reveal=False) or "")


def test_a_number_off_by_a_factor_of_two_says_so_too():
    assert "doubled" in judge("scalar", 0.5, 0.25) and "doubled" not in judge("scalar", 0.5, 0.3)


def test_nan_against_nan_explains_equal_nan():
    nan = torch.tensor([math.nan])
    assert "unless the check passes equal_nan=True" in tensor_problem(nan, nan)
    assert "unless the check passes equal_nan=True" in judge("scalar", math.nan, math.nan)
    assert judge("scalar", math.nan, math.nan, equal_nan=True) is None
