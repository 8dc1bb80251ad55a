"""Spec for course_utils.checks (the learner's side): every failure message, the confirmation, and recording.

Our checks are compared with PyTorch's own references (torch.testing.assert_close, autograd.gradcheck),
micrograd style: when torch says two tensors differ, so must we, and the other way round.
"""
import pytest
import torch
from torch import nn

from course_utils import checks
from course_utils.checks import (CheckFailure, check_at_least, check_grad, check_grad_fn, check_module,
                                 check_scalar, check_tensor, record)
from course_utils.grading.verdicts import load_records


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
    assert capsys.readouterr().out.splitlines() == ["✔ the product: passed", "✔ accuracy: passed", "✔ x.grad: passed",
                                                    "✔ the layer: passed"]
    with pytest.raises(CheckFailure):
        check_tensor(torch.zeros(2), torch.ones(2))
    assert capsys.readouterr().out == ""


def test_not_a_tensor_says_what_it_is():
    assert "should be a tensor, but it is a list of length 2" in failure(check_tensor, [1, 2], torch.ones(2))
    assert "numpy.ndarray of shape (2,)" in failure(check_tensor, __import__("numpy").ones(2), torch.ones(2))
    assert "None (did your function forget to `return`?)" in failure(check_tensor, None, torch.ones(2))


def test_shape_message_names_both_shapes():
    message = failure(check_tensor, torch.ones(2, 3), torch.ones(3, 2), name="m")
    assert message == "m has shape (2, 3), expected shape (3, 2)."


def test_dtype_message_names_both_dtypes():
    message = failure(check_tensor, torch.ones(2, dtype=torch.float64), torch.ones(2))
    assert message == "result has dtype torch.float64, expected torch.float32."
    check_tensor(torch.ones(2, dtype=torch.float64), torch.ones(2), check_dtype=False)


def test_device_message_when_asked():
    meta = torch.ones(2, device="meta")
    assert "is on device meta, expected cpu" in failure(check_tensor, meta, torch.ones(2), check_device=True)


def test_nan_and_inf_are_reported_with_their_first_index():
    message = failure(check_tensor, torch.tensor([1.0, float("nan"), float("inf")]), torch.ones(3))
    assert "contains NaN or inf (2 of 3 elements), first at index (1,): nan" in message


def test_values_message_gives_first_index_both_values_and_count():
    actual = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    message = failure(check_tensor, actual, torch.tensor([[1.0, 2.0], [4.0, 6.0]]))
    assert "2 of 4 elements differ" in message
    assert "First at index (1, 0): got 3, expected 4" in message


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
    try:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
        torch_ok = True
    except AssertionError:
        torch_ok = False
    try:
        check_tensor(actual, expected, rtol=1e-5, atol=1e-6)
        ours_ok = True
    except CheckFailure:
        ours_ok = False
    assert ours_ok == torch_ok


def test_integer_tensors_compare_exactly():
    check_tensor(torch.tensor([1, 2]), torch.tensor([1, 2]))
    assert "got 3, expected 2" in failure(check_tensor, torch.tensor([1, 3]), torch.tensor([1, 2]))


# ---------------------------------------------------------------- scalars


def test_check_scalar_accepts_numbers_and_one_element_tensors():
    check_scalar(0.1 + 0.2, 0.3)
    check_scalar(torch.tensor([8.0]), 8.0)


def test_check_scalar_messages():
    assert failure(check_scalar, 2.0, 3.0, name="slope") == "slope is 2, expected 3."
    assert "should be a number (or a one-element tensor), but it is a tensor of shape (2,)" in failure(
        check_scalar, torch.ones(2), 1.0)
    assert "not a finite number" in failure(check_scalar, float("nan"), 1.0)
    assert "should be a number" in failure(check_scalar, True, 1.0)


def test_check_at_least():
    check_at_least(0.85, 0.8)
    assert failure(check_at_least, 0.5, 0.8, name="accuracy") == "accuracy is 0.5, it should be at least 0.8."
    assert "should be a number" in failure(check_at_least, "high", 0.8)


# ---------------------------------------------------------------- gradients


def test_check_grad_passes_on_autograd_result():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    (x + 5).mean().backward()
    check_grad(x, torch.full((4,), 0.25))


def test_check_grad_explains_missing_requires_grad():
    message = failure(check_grad, torch.ones(3), torch.ones(3))
    assert "x.grad is None" in message and "requires_grad=True" in message


def test_check_grad_explains_missing_backward():
    x = torch.ones(3, requires_grad=True)
    _ = (x * 2).sum()
    assert "backward() was not called" in failure(check_grad, x, torch.ones(3))


def test_check_grad_shape_and_values():
    x = torch.ones(3, requires_grad=True)
    (x * 2).sum().backward()
    assert "x.grad has shape (3,), expected shape (2,)" in failure(check_grad, x, torch.ones(2))
    assert "x.grad has the wrong values: 3 of 3 elements differ" in failure(check_grad, x, torch.ones(3))
    assert "should be a tensor" in failure(check_grad, [1.0], [1.0])


def test_check_grad_fn_accepts_a_correct_gradient_like_gradcheck():
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fn = lambda t: torch.log1p(torch.exp(t)).sum()  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(),))
    check_grad_fn(torch.sigmoid, fn, (x,))


def test_check_grad_fn_rejects_a_wrong_gradient_against_autograd():
    x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    message = failure(check_grad_fn, lambda t: 3 * t, lambda t: (t ** 2).sum(), (x,))
    assert "(compared with autograd)" in message and "2 of 2 elements differ" in message


def test_check_grad_fn_uses_finite_differences_too(monkeypatch):
    # If autograd itself were fooled (here: patched), finite differences still catch the wrong gradient.
    monkeypatch.setattr(checks, "_autograd_gradient", lambda fn, inputs: (3 * inputs[0],))
    message = failure(check_grad_fn, lambda t: 3 * t, lambda t: (t ** 2).sum(), (torch.tensor([1.0], dtype=torch.float64),))
    assert "(compared with finite differences)" in message


def test_check_grad_fn_several_inputs_and_wrong_count():
    u, v = torch.tensor([2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    check_grad_fn(lambda a, b: (b, a), lambda a, b: (a * b).sum(), (u, v))
    assert "should return 2 gradient tensor(s)" in failure(check_grad_fn, lambda a, b: b, lambda a, b: (a * b).sum(), (u, v))


# ---------------------------------------------------------------- modules


def test_check_module_passes_and_reports_each_difference():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    check_module(net, layer_types=["Linear", "ReLU", "Linear"], n_params=67, sample_input=torch.zeros(2, 4),
                 output_shape=(2, 3))
    assert "layer types are ['Linear', 'ReLU', 'Linear'], expected ['Linear', 'Tanh', 'Linear']" in failure(
        check_module, net, layer_types=["Linear", "Tanh", "Linear"])
    assert "it has 67 parameters, expected 70" in failure(check_module, net, n_params=70)
    assert "the output has shape [2, 3], expected [2, 4]" in failure(
        check_module, net, sample_input=torch.zeros(2, 4), output_shape=(2, 4))
    assert "expected an nn.Module, but got a str" in failure(check_module, "net")
    assert "failed with RuntimeError" in failure(check_module, net, sample_input=torch.zeros(2, 5))


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


def test_checks_with_key_record_actual_even_when_they_fail(record_file):
    with pytest.raises(CheckFailure):
        check_tensor(torch.zeros(2), torch.ones(2), key="ex_b/visible")
    entry = load_records(record_file)["ex_b/visible"]
    assert entry["params"]["visible"] is True
    assert torch.equal(entry["value"], torch.zeros(2))


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
    assert records["ex_a/gen"]["value"]["__unsupported__"].startswith("a generator (<generator object")


def test_module_records_hold_what_the_trusted_side_needs(record_file):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    check_module(net, sample_input=torch.ones(4, 2), key="ex_m/net")
    value = load_records(record_file)["ex_m/net"]["value"]
    assert value["layers"] == [["Linear", [[3, 2], [3]]], ["ReLU", []], ["Linear", [[1, 3], [1]]]]
    assert value["n_params"] == 13 and value["output_shape"] == [4, 1]
    assert torch.equal(value["state_dict"]["0.weight"], net[0].weight.detach())
    assert torch.allclose(value["output"], net(torch.ones(4, 2)).detach())
