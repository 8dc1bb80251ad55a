"""Spec for course_utils.checks (the learner's side): every failure message, the confirmation, recording,
and what a learner sees in Jupyter.

Our checks are compared with PyTorch's own references (torch.testing.assert_close, autograd.gradcheck),
micrograd style: when torch says two tensors differ, so must we, and the other way round (the property
tests are in test_compare.py; visible-vs-trusted agreement on every solution in test_check_agreement.py).
The section "defects of issue 12" pins each defect the issue measured, on both sides.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from course_utils import checks
from course_utils.checks import (
    CheckFailure,
    check_at_least,
    check_grad,
    check_grad_fn,
    check_module,
    check_scalar,
    check_tensor,
    record,
)
from course_utils.grading.pipeline.verdicts import compare_records
from course_utils.records import load_records


def failure(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailure) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, AssertionError)
    return str(info.value)


@pytest.fixture
def record_file(tmp_path, monkeypatch):
    path = tmp_path / "records.pt"
    monkeypatch.setenv(checks.RECORD_ENV, str(path))
    return path


def graded(record_file, key: str, reference_key: str | None = None):
    """The trusted verdict on ``key`` (as recorded in ``record_file``) against that same record as reference."""
    records = load_records(record_file)
    return compare_records({key: records[key]}, {key: records[reference_key or key]})[key.split("/")[0]]


def both_sides(record_file, monkeypatch, check, actual, *args, **kwargs):
    """(visible message or None, trusted message or None) for one keyed check: the solution's answer is
    ``kwargs.pop('solution')``, recorded first as the reference."""
    solution = kwargs.pop("solution")
    reference_file = record_file.parent / "reference.pt"
    monkeypatch.setenv(checks.RECORD_ENV, str(reference_file))
    check(solution, *args, key="ex_t/visible", **kwargs)
    monkeypatch.setenv(checks.RECORD_ENV, str(record_file))
    try:
        check(actual, *args, key="ex_t/visible", **kwargs)
        visible = None
    except CheckFailure as error:
        visible = str(error)
    verdict = compare_records(load_records(record_file), load_records(reference_file))["ex_t"]
    return visible, (None if verdict.passed else verdict.message)


# ---------------------------------------------------------------- check_tensor messages


def test_check_tensor_passes_on_equal_tensors():
    check_tensor(torch.arange(3.0), torch.tensor([0.0, 1.0, 2.0]))


def test_a_passing_check_says_so_in_one_line_naming_what_passed(capsys):
    check_tensor(torch.ones(2), torch.ones(2), name="the product")
    check_scalar(0.5, 0.5, name="accuracy")
    x = torch.ones(2, requires_grad=True)
    x.sum().backward()
    check_grad(x, [1.0, 1.0])
    check_module(nn.Linear(2, 1), n_params=3, name="the layer")
    assert capsys.readouterr().out.splitlines() == [
        "✔ the product: passed",
        "✔ accuracy: passed",
        "✔ x.grad: passed",
        "✔ the layer: passed",
    ]
    with pytest.raises(CheckFailure):
        check_tensor(torch.zeros(2), torch.ones(2))
    assert capsys.readouterr().out == ""


def test_not_a_tensor_says_what_it_is_and_what_to_do():
    assert "should be a tensor, but it is a list of length 2. Build a tensor with torch.tensor" in failure(
        check_tensor, [1, 2], torch.ones(2)
    )
    numpy_message = failure(check_tensor, np.ones(2), torch.ones(2))
    assert "numpy.ndarray of shape (2,)" in numpy_message and "torch.from_numpy" in numpy_message
    assert "None (did your function forget to `return`?)" in failure(check_tensor, None, torch.ones(2))
    assert "no .item() here" in failure(check_tensor, 2.0, torch.tensor(2.0))
    assert "did you forget to call it?" in failure(check_tensor, torch.ones, torch.ones(2))


def test_shape_message_names_both_shapes_and_suggests_the_axis():
    message = failure(check_tensor, torch.ones(2, 3), torch.ones(3, 2), name="m")
    assert message.startswith("m has shape (2, 3), expected shape (3, 2).")
    assert "transposed" in message and "wrong axis (dim=...)" in message
    assert "keepdim=True" in failure(check_tensor, torch.ones(3), torch.ones(3, 1))


def test_zero_d_and_one_element_tensors_differ_with_a_way_out():
    assert ".squeeze()" in failure(check_tensor, torch.ones(1), torch.tensor(1.0))
    assert ".reshape(1)" in failure(check_tensor, torch.tensor(1.0), torch.ones(1))


def test_dtype_message_names_both_dtypes_and_where_float64_comes_from():
    message = failure(check_tensor, torch.ones(2, dtype=torch.float64), torch.ones(2))
    assert message.startswith("result has dtype torch.float64, expected torch.float32.")
    assert "NumPy or Python floats" in message and "dtype=torch.float32" in message
    assert ".long()" in failure(check_tensor, torch.ones(2), torch.ones(2, dtype=torch.int64))
    check_tensor(torch.ones(2, dtype=torch.float64), torch.ones(2), check_dtype=False)


def test_nan_and_inf_are_reported_with_their_first_index_and_a_fix():
    message = failure(check_tensor, torch.tensor([1.0, float("nan"), float("inf")]), torch.ones(3))
    assert (
        "contains NaN or inf where finite values are expected (2 of 3 elements), the first at index (1,): nan"
        in message
    )
    assert "log(0)" in message and "clamp" in message and "stable form" in message
    assert "overflow" in failure(check_tensor, torch.tensor([float("inf")]), torch.ones(1))


def test_values_message_gives_first_index_both_values_the_difference_and_the_tolerance():
    actual = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    message = failure(check_tensor, actual, torch.tensor([[1.0, 2.0], [4.0, 6.0]]))
    assert "2 of 4 elements differ" in message
    assert (
        "First at index (1, 0): got 3.0, expected 4.0 "
        "(off by 1, allowed 1.52e-05 = atol 1e-05 + rtol 1.3e-06 × |expected|)" in message
    )


def test_a_flipped_sign_is_pointed_out():
    assert "opposite sign" in failure(check_tensor, torch.tensor([-1.0, 2.0]), torch.tensor([1.0, -2.0]))


def test_hint_is_appended():
    message = failure(check_tensor, torch.zeros(1), torch.ones(1), hint="try torch.ones")
    assert message.endswith("\nHint: try torch.ones")


def test_message_is_short_and_traceback_starts_at_the_check():
    with pytest.raises(CheckFailure) as info:
        check_tensor(torch.zeros(3), torch.ones(3))
    assert info.value.__suppress_context__ and info.value.__cause__ is None
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("seed", range(20))
def test_check_tensor_agrees_with_torch_assert_close(seed):
    g = torch.Generator().manual_seed(seed)
    expected = torch.randn(5, generator=g)
    actual = expected + torch.randn(5, generator=g) * 10.0 ** torch.randint(-9, -2, (1,), generator=g).item()
    for tolerances in ({"rtol": 1e-5, "atol": 1e-6}, {}):
        try:
            torch.testing.assert_close(actual, expected, **tolerances)
            torch_ok = True
        except AssertionError:
            torch_ok = False
        try:
            check_tensor(actual, expected, **tolerances)
            ours_ok = True
        except CheckFailure:
            ours_ok = False
        assert ours_ok == torch_ok


def test_integer_tensors_compare_exactly():
    check_tensor(torch.tensor([1, 2]), torch.tensor([1, 2]))
    assert "got 3, expected 2 (integers and bools must match exactly)" in failure(
        check_tensor, torch.tensor([1, 3]), torch.tensor([1, 2])
    )


# ---------------------------------------------------------------- scalars


def test_check_scalar_accepts_numbers_numpy_numbers_and_one_element_tensors():
    for number in (
        0.1 + 0.2,
        np.float64(0.3),
        np.float32(0.3),
        np.array([0.3]),
        torch.tensor([0.3]),
        torch.tensor(0.3, dtype=torch.float64, requires_grad=True),
    ):
        check_scalar(number, 0.3, rtol=1e-6)
    check_scalar(np.int64(5), 5)


def test_check_scalar_messages():
    assert failure(check_scalar, 2.0, 3.0, name="slope") == (
        "slope is 2.0, expected 3.0 (off by 1, allowed 4e-07 = atol 1e-07 + rtol 1e-07 × |expected|)."
    )
    assert failure(check_scalar, 4, 5, name="len") == "len is 4, expected 5."
    message = failure(check_scalar, torch.ones(2), 1.0)
    assert "should be a number (or a one-element tensor), but it is a tensor of shape (2,)" in message
    assert ".sum() or .mean()" in message
    assert "not a finite number" in failure(check_scalar, float("nan"), 1.0)
    assert "should be a number" in failure(check_scalar, True, 1.0)


def test_check_at_least():
    check_at_least(0.85, 0.8)
    check_at_least(torch.tensor(0.85), 0.8)
    assert failure(check_at_least, 0.5, 0.8, name="accuracy") == "accuracy is 0.5, it should be at least 0.8."
    assert "should be a number" in failure(check_at_least, "high", 0.8)
    assert "is nan" in failure(check_at_least, float("nan"), 0.8)
    assert failure(check_at_least, -(10**400), 0) == f"result is {-(10**400)}, it should be at least 0."


# ---------------------------------------------------------------- gradients


def test_check_grad_passes_on_autograd_result():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    (x + 5).mean().backward()
    check_grad(x, torch.full((4,), 0.25))
    check_grad(x, [0.25, 0.25, 0.25, 0.25])


def test_check_grad_explains_missing_requires_grad():
    message = failure(check_grad, torch.ones(3), torch.ones(3))
    assert "x.grad is None" in message and "requires_grad=True" in message


def test_check_grad_explains_missing_backward_and_non_leaf():
    x = torch.ones(3, requires_grad=True)
    _ = (x * 2).sum()
    assert "backward() was not called" in failure(check_grad, x, torch.ones(3))
    assert "not a leaf tensor" in failure(check_grad, x * 2, torch.ones(3))


def test_check_grad_shape_and_values():
    x = torch.ones(3, requires_grad=True)
    (x * 2).sum().backward()
    assert "x.grad has shape (3,), expected shape (2,)" in failure(check_grad, x, torch.ones(2))
    assert "x.grad has the wrong values: 3 of 3 elements differ" in failure(check_grad, x, torch.ones(3))
    assert "should be a tensor" in failure(check_grad, [1.0], [1.0])
    check_grad(x, [2, 2, 2])  # integers given as the expected gradient mean the default float dtype


def test_check_grad_fn_accepts_a_correct_gradient_like_gradcheck():
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fn = lambda t: torch.log1p(torch.exp(t)).sum()  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(),))
    check_grad_fn(torch.sigmoid, fn, (x,))


def test_check_grad_fn_rejects_a_wrong_gradient_against_autograd():
    x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    message = failure(check_grad_fn, lambda t: 3 * t, lambda t: (t**2).sum(), (x,))
    assert "(compared with autograd)" in message and "2 of 2 elements differ" in message


def test_check_grad_fn_uses_finite_differences_too(monkeypatch):
    # If autograd itself were fooled (here: patched), finite differences still catch the wrong gradient.
    monkeypatch.setattr(checks, "_autograd_gradient", lambda fn, inputs: (3 * inputs[0],))
    message = failure(
        check_grad_fn, lambda t: 3 * t, lambda t: (t**2).sum(), (torch.tensor([1.0], dtype=torch.float64),)
    )
    assert "(compared with finite differences)" in message


def test_check_grad_fn_several_inputs_and_wrong_count():
    u, v = torch.tensor([2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    check_grad_fn(lambda a, b: (b, a), lambda a, b: (a * b).sum(), (u, v))
    assert "should return 2 gradient tensor(s), one per input, but it returned 1 values" in failure(
        check_grad_fn, lambda a, b: b, lambda a, b: (a * b).sum(), (u, v)
    )


def test_check_grad_fn_reports_an_error_in_the_learners_function_and_keeps_its_traceback():
    def broken(x):
        return x.nonexistent()

    with pytest.raises(CheckFailure, match="your gradient raised AttributeError") as info:
        check_grad_fn(broken, lambda t: (t**2).sum(), (torch.ones(2),))
    assert isinstance(info.value.__cause__, AttributeError)


# ---------------------------------------------------------------- modules


def test_check_module_passes_and_reports_each_difference():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    check_module(
        net, layer_types=["Linear", "ReLU", "Linear"], n_params=67, sample_input=torch.zeros(2, 4), output_shape=(2, 3)
    )
    assert "layer types are ['Linear', 'ReLU', 'Linear'], expected ['Linear', 'Tanh', 'Linear']" in failure(
        check_module, net, layer_types=["Linear", "Tanh", "Linear"]
    )
    assert "it has 67 parameters, expected 70" in failure(check_module, net, n_params=70)
    assert "the output has shape [2, 3], expected [2, 4]" in failure(
        check_module, net, sample_input=torch.zeros(2, 4), output_shape=(2, 4)
    )
    assert "should be an nn.Module, but it is a str ('net')" in failure(check_module, "net")
    assert "Create an instance by calling the class" in failure(check_module, nn.Linear)
    assert "on a sample input of shape (2, 5) failed with RuntimeError" in failure(
        check_module, net, sample_input=torch.zeros(2, 5)
    )


# ---------------------------------------------------------------- recording


def test_record_is_a_no_op_without_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(checks.RECORD_ENV, raising=False)
    record("ex_a/x", torch.ones(2))
    assert not list(tmp_path.iterdir())


def test_record_rejects_bad_keys_and_kinds():
    with pytest.raises(ValueError, match="grade_id/label"):
        record("no_slash", 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        record("ex_a/x", 1, kind="pickle")
    with pytest.raises(ValueError, match="grade_id/label"):
        check_tensor(torch.ones(1), torch.ones(1), key="no_slash")


def test_record_writes_detached_cpu_copies_atomically(record_file):
    x = torch.ones(2, requires_grad=True)
    record("ex_a/x", x * 2, rtol=1e-3)
    record("ex_a/net", nn.Linear(2, 1), kind="module")
    records = load_records(record_file)
    assert set(records) == {"ex_a/x", "ex_a/net"}
    assert not records["ex_a/x"]["value"].requires_grad
    assert records["ex_a/x"]["params"] == {"rtol": 1e-3}
    assert records["ex_a/net"]["value"]["n_params"] == 3
    assert [p.name for p in record_file.parent.iterdir()] == ["records.pt"]  # no temp files left


def test_checks_with_key_record_their_answer_and_rule_even_when_they_fail(record_file):
    with pytest.raises(CheckFailure):
        check_tensor(torch.zeros(2), torch.ones(2), atol=0.5, key="ex_b/visible")
    entry = load_records(record_file)["ex_b/visible"]
    assert entry["params"]["visible"] is True and entry["params"]["atol"] == 0.5
    assert torch.equal(entry["value"], torch.zeros(2)) and torch.equal(entry["params"]["expected"], torch.ones(2))


def test_record_stores_plain_types_only(record_file):
    class Sneaky(float):
        def __eq__(self, other):
            return True

    class MyTensor(torch.Tensor):
        pass

    record("ex_a/f", Sneaky(1.0), kind="scalar")
    record("ex_a/t", torch.ones(2).as_subclass(MyTensor))
    record("ex_a/gen", (i for i in range(3)), kind="value")
    records = load_records(record_file)  # weights_only load succeeds: nothing but plain data inside
    assert type(records["ex_a/f"]["value"]) is float
    assert type(records["ex_a/t"]["value"]) is torch.Tensor
    message = compare_records(records, {"ex_a/gen": {"kind": "value", "value": [0, 1, 2], "params": {}}})[
        "ex_a"
    ].message
    assert "the result is a generator (<generator object" in message and "__" not in message


def test_module_records_hold_what_the_trusted_side_needs(record_file):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    check_module(net, sample_input=torch.ones(4, 2), key="ex_m/net")
    value = load_records(record_file)["ex_m/net"]["value"]
    assert value["layers"] == [["Linear", [[3, 2], [3]]], ["ReLU", []], ["Linear", [[1, 3], [1]]]]
    assert value["n_params"] == 13 and value["output_shape"] == [4, 1]
    assert torch.equal(value["state_dict"]["0.weight"], net[0].weight.detach())
    assert torch.allclose(value["output"], net(torch.ones(4, 2)).detach())


# ---------------------------------------------------------------- defects of issue 12, on both sides


def test_a_float64_leaf_gets_the_same_verdict_in_the_notebook_and_in_the_grade(record_file, monkeypatch):
    def leaf(dtype):
        x = torch.tensor([1.0, 2.0], dtype=dtype, requires_grad=True)
        (x * 3).sum().backward()
        return x

    visible, trusted = both_sides(
        record_file, monkeypatch, check_grad, leaf(torch.float64), [3.0, 3.0], solution=leaf(torch.float32)
    )
    assert visible.startswith("x.grad has dtype torch.float64, expected torch.float32.") and visible in trusted
    assert both_sides(
        record_file,
        monkeypatch,
        check_grad,
        leaf(torch.float64),
        [3.0, 3.0],
        check_dtype=False,
        solution=leaf(torch.float32),
    ) == (None, None)


@pytest.mark.parametrize("number", [np.float32(0.5), np.float64(0.5), np.array([0.5]), torch.tensor([0.5])])
def test_numpy_numbers_and_one_element_tensors_pass_on_both_sides(record_file, monkeypatch, number):
    assert both_sides(record_file, monkeypatch, check_scalar, number, 0.5, solution=0.5) == (None, None)
    record("ex_h/w", number, kind="scalar")
    assert load_records(record_file)["ex_h/w"]["value"] == 0.5
    assert compare_records(load_records(record_file), {"ex_h/w": {"kind": "scalar", "value": 0.5, "params": {}}})[
        "ex_h"
    ].passed


def test_a_missing_result_is_not_called_a_gradient(record_file):
    record("ex_n/out", None)
    message = compare_records(
        load_records(record_file), {"ex_n/out": {"kind": "tensor", "value": torch.ones(2), "params": {}}}
    )["ex_n"].message
    assert "should be a tensor, but it is None (did your function forget to `return`?)" in message
    assert ".grad" not in message


def test_value_messages_show_enough_digits_to_see_the_difference():
    # ex04_adam_update with eps=1e-5: six significant digits printed "got 0.99, expected 0.99"
    message = failure(
        check_tensor,
        torch.tensor([0.99001], dtype=torch.float64),
        torch.tensor([0.99], dtype=torch.float64),
        rtol=1e-7,
        atol=1e-10,
    )
    assert "got 0.99001, expected 0.99 (off by 1e-05, allowed 9.9" in message
    message = failure(check_tensor, torch.tensor([1.0000001]), torch.tensor([1.0]), rtol=0.0, atol=0.0)
    assert "got 1.0000001, expected 1.0" in message


class OnTheGpu(torch.Tensor):
    """Stands in for a CUDA tensor on a machine without one: it reports the device cuda:0."""

    @property
    def device(self):
        return torch.device("cuda", 0)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta", "ignore:The PyTorch API of nested tensors")
@pytest.mark.parametrize(
    "make, named",
    [
        (lambda: torch.ones(2, device="meta"), "is a tensor on the meta device, which has a shape but no values"),
        (lambda: torch.ones(2).to_sparse(), "is a tensor with layout torch.sparse_coo"),
        (lambda: torch.ones(2, 2).to_sparse_csr(), "is a tensor with layout torch.sparse_csr"),
        (lambda: torch.ones(2).as_subclass(OnTheGpu), "is on the cuda:0 device"),
        (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]), "is a nested tensor"),
    ],
    ids=["meta", "sparse_coo", "sparse_csr", "cuda", "nested"],
)
def test_other_devices_and_layouts_fail_with_a_message_naming_them_on_both_sides(record_file, monkeypatch, make, named):
    visible, trusted = both_sides(
        record_file, monkeypatch, check_tensor, make(), torch.ones(2, 2), solution=torch.ones(2, 2)
    )
    assert visible.startswith(f"result {named}") and visible in trusted
    record("ex_r/x", make())  # record() itself never fails on them
    assert "ex_r/x" in load_records(record_file)


def test_nan_handling_is_the_equal_nan_parameter():
    nan = torch.tensor([1.0, float("nan")])
    assert "wrong values" in failure(check_tensor, nan, nan.clone())
    check_tensor(nan, nan.clone(), equal_nan=True)
    check_scalar(float("nan"), float("nan"), equal_nan=True)


def test_integers_compare_exactly_even_where_float64_cannot_tell_them_apart():
    assert "integers and bools must match exactly" in failure(
        check_tensor, torch.tensor([2**53 + 1]), torch.tensor([2**53])
    )
    assert "got 100001, expected 100000" in failure(check_tensor, torch.tensor([100001]), torch.tensor([100000]))
    assert "got 100001, expected 100000" in failure(
        check_tensor, torch.tensor([100001]), torch.tensor([100000]), rtol=0.1, atol=5.0
    )  # tolerances are for floats
    assert failure(check_scalar, 2**53 + 1, 2**53) == f"result is {2**53 + 1}, expected {2**53}."


def test_float32_round_off_near_zero_passes_with_the_default_tolerances():
    cos = torch.cos(torch.tensor([math.pi / 2, 0.0]))
    assert cos[0] != 0
    check_tensor(cos, torch.tensor([0.0, 1.0]))
    check_scalar(cos[0], 0.0)


def test_no_warning_reaches_stderr_where_nbgrader_would_score_the_cell_zero(capfd):
    with warnings.catch_warnings():  # torch warns when the learner makes it; the checks must not warn again
        warnings.simplefilter("ignore")
        half = torch.zeros(2, dtype=torch.complex32)
    capfd.readouterr()
    with pytest.raises(CheckFailure):
        check_tensor(torch.tensor([1 + 1j]), torch.tensor([1.0]), check_dtype=False, rtol=0, atol=0)
    assert "dtype torch.complex32" in failure(check_tensor, half, torch.zeros(2))
    record("ex_w/x", half)
    assert capfd.readouterr().err == ""


def test_huge_or_deeply_nested_answers_are_described_and_never_break_the_record_file(record_file):
    from course_utils.answers import answer
    from course_utils.records import load_record_bytes

    deep = [1.0]
    for _ in range(40):
        deep = [deep]
    huge = list(range(200_000))
    for value in (deep, huge):
        with pytest.raises(CheckFailure, match="should be a tensor"):
            check_tensor(value, torch.ones(1), key="ex_big/visible")
        record("ex_big/value", value, kind="value")
        load_record_bytes(record_file.read_bytes(), cap=64 * 2**20)  # the grader reads the whole file
    assert "a list of length 200000, too large to check" in failure(check_tensor, huge, torch.ones(1))
    assert "a list of length 1, nested too deeply" in str(answer("tensor", deep))


# ---------------------------------------------------------------- a big answer fails its own check, never the file


def test_a_value_too_large_to_record_fails_its_own_check_in_the_kernel_and_the_grade(tmp_path, monkeypatch):
    """A 10**7-element tensor would make a record file over the grader's cap (every task 0): the visible check
    refuses it in the kernel, recording a short marker, and the grader fails that check alone, in the same words."""
    from course_utils.records import MAX_ENTRY_BYTES, load_record_bytes

    path = tmp_path / "records.pt"
    monkeypatch.setenv(checks.RECORD_ENV, str(path))
    big = torch.zeros(10**7)
    with pytest.raises(CheckFailure) as info:
        check_tensor(big, big, key="ex_big/visible")
    assert "is too large to check" in str(info.value)
    record("ex_big/hidden", big)
    record("ex_small/hidden", torch.ones(2))
    assert path.stat().st_size < MAX_ENTRY_BYTES
    records = load_record_bytes(path.read_bytes(), 64 * 2**20)
    reference = {
        "ex_big/visible": {
            "kind": "tensor",
            "value": torch.zeros(1),
            "params": {"visible": True, "expected": torch.zeros(1)},
        },
        "ex_big/hidden": {"kind": "tensor", "value": torch.zeros(1), "params": {}},
        "ex_small/hidden": {"kind": "tensor", "value": torch.ones(2), "params": {}},
    }
    verdicts = compare_records(records, reference)
    assert verdicts["ex_small"].passed and not verdicts["ex_big"].passed
    assert str(info.value) in verdicts["ex_big"].message


def test_without_recording_a_big_value_is_refused_all_the_same():
    with pytest.raises(CheckFailure, match="too large to check"):
        check_tensor(torch.zeros(5 * 10**6), torch.zeros(1))


def test_an_unanswered_gradient_function_says_it_is_not_written_yet():
    """nbgrader's stub inside check_grad_fn is not "raised NotImplementedError": it is the one unanswered sentence."""

    def stub(x):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        check_grad_fn(stub, lambda x: (x**2).sum(), (torch.ones(2),))
