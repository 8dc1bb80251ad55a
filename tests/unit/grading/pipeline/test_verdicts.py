"""Spec for course_utils.grading.pipeline.verdicts (the grader's side): safe loading of record files and the trusted
comparison with the solution's records, including the classifier kind (course_utils.classifier)."""

import os

import pytest
import torch

from course_utils.classifier import build_apparel_classifier
from course_utils.grading.pipeline.verdicts import compare_records
from course_utils.records import load_records


def test_load_records_errors_are_actionable(tmp_path):
    with pytest.raises(FileNotFoundError, match="recorded nothing"):
        load_records(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_records(tmp_path / "junk.pt")
    torch.save({"bad key": {"kind": "tensor", "value": 1, "params": {}}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="malformed"):
        load_records(tmp_path / "bad.pt")


def test_load_records_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"ex_a/x": {"kind": "value", "value": Evil(), "params": {}}}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_records(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def entry(value, kind="tensor", **params):
    return {"kind": kind, "value": value, "params": params}


def test_compare_records_passes_matching_and_fails_missing():
    reference = {"ex_a/one": entry(torch.ones(2)), "ex_a/two": entry(3, "value"), "ex_b/x": entry(2.0, "scalar")}
    student = {"ex_a/one": entry(torch.ones(2)), "ex_a/two": entry(3, "value"), "extra/key": entry(1, "value")}
    verdicts = compare_records(student, reference)
    assert set(verdicts) == {"ex_a", "ex_b"}
    assert verdicts["ex_a"].passed and not verdicts["ex_b"].passed
    assert "was not recorded: did the cell run to the end?" in verdicts["ex_b"].message


def test_compare_records_hidden_messages_never_reveal_expected_values():
    reference = {"ex_a/h": entry(torch.tensor([123.25, 456.5]))}
    message = compare_records({"ex_a/h": entry(torch.tensor([1.0, 456.5]))}, reference)["ex_a"].message
    assert (
        "hidden test 'h' failed: the result has the wrong values: 1 of 2 elements differ, the first at index "
        "(0,) (yours there: 1.0; allowed tolerance: rtol=1.3e-06, atol=1e-05)."
    ) in message
    assert "123" not in message
    shape = compare_records({"ex_a/h": entry(torch.ones(3))}, reference)["ex_a"].message
    assert "the result has shape (3,); the expected shape differs" in shape and "(2,)" not in shape
    dtype = compare_records({"ex_a/h": entry(torch.ones(2, dtype=torch.float64))}, reference)["ex_a"].message
    assert "dtype torch.float64; the expected dtype differs" in dtype and "float32" not in dtype
    scalar = compare_records({"s/x": entry(2.5, "scalar")}, {"s/x": entry(7.25, "scalar")})["s"].message
    assert "the result is 2.5, which is not within the allowed tolerance" in scalar and "7.25" not in scalar


def test_hidden_messages_are_as_specific_as_visible_ones():
    """No bare "the result differs", no placeholder dicts: what is wrong with the learner's value, and a fix."""
    reference = {"ex_a/h": entry(torch.ones(3))}
    nan = compare_records({"ex_a/h": entry(torch.tensor([1.0, float("nan"), 1.0]))}, reference)["ex_a"].message
    assert "contains NaN or inf where finite values are expected (1 of 3 elements), the first at index (1,)" in nan
    assert "log(0)" in nan
    marker = compare_records(
        {"ex_a/h": entry({"__what__": "a numpy.ndarray of shape (3,) and dtype float64"})}, reference
    )["ex_a"].message
    assert "should be a tensor, but it is a numpy.ndarray of shape (3,)" in marker and "torch.from_numpy" in marker
    assert "__" not in marker
    value = compare_records({"v/x": entry("no error", "value")}, {"v/x": entry("ValueError", "value")})["v"].message
    assert "the result is 'no error', which is not the expected value" in value and "ValueError" not in value
    item = compare_records({"v/n": entry(torch.tensor(5), "value")}, {"v/n": entry(5, "value")})["v"].message
    assert ".item()" in item


def test_visible_checks_are_judged_by_the_rule_the_solution_recorded():
    """The reference of a visible check holds its expected value, tolerances, name and hint: the grader's
    message is the learner's, and the expected value is the check's, not the solution's answer."""
    rule = {
        "visible": True,
        "expected": torch.tensor([1.0, 2.0]),
        "atol": 0.5,
        "rtol": 0.0,
        "name": "f(x)",
        "hint": "add one",
    }
    reference = {"ex_v/x": entry(torch.tensor([1.25, 2.25]), **rule)}
    assert compare_records({"ex_v/x": entry(torch.tensor([1.4, 2.4]))}, reference)["ex_v"].passed
    message = compare_records({"ex_v/x": entry(torch.tensor([1.0, 3.0]))}, reference)["ex_v"].message
    assert (
        "visible check 'x' failed: f(x) has the wrong values: 1 of 2 elements differ. First at index (1,): got "
        "3.0, expected 2.0 (off by 1, allowed 0.5 = atol 0.5 + rtol 0 × |expected|).\nHint: add one"
    ) in message


def test_compare_records_uses_reference_params_not_the_students():
    reference = {"ex_a/x": entry(torch.tensor([1.0]), rtol=0.0, atol=1e-6)}
    student = {"ex_a/x": entry(torch.tensor([1.5]), rtol=10.0, atol=10.0)}
    assert not compare_records(student, reference)["ex_a"].passed


def test_compare_records_kinds():
    ref_module = {"layers": [["Linear", [[1, 2], [1]]]], "n_params": 3, "output_shape": None}
    assert compare_records({"m/x": entry(ref_module, "module")}, {"m/x": entry(ref_module, "module")})["m"].passed
    other = {"layers": [["Linear", [[2, 2], [2]]]], "n_params": 6, "output_shape": None}
    assert (
        "parameter shapes of a Linear layer differ"
        in compare_records({"m/x": entry(other, "module")}, {"m/x": entry(ref_module, "module")})["m"].message
    )
    assert not compare_records({"v/x": entry("3", "value")}, {"v/x": entry(3, "value")})["v"].passed
    assert not compare_records({"v/x": entry(1, "value")}, {"v/x": entry(True, "value")})["v"].passed
    assert compare_records({"s/x": entry(torch.tensor(2.0), "scalar")}, {"s/x": entry(2.0, "scalar")})["s"].passed
    pair = [torch.ones(2), 5.0]
    assert compare_records({"l/x": entry(pair)}, {"l/x": entry([torch.ones(2), 5.0])})["l"].passed
    assert not compare_records({"l/x": entry([torch.ones(2), 4.0])}, {"l/x": entry(pair)})["l"].passed


def test_compare_records_survives_garbage_student_values():
    reference = {
        "ex_a/x": entry(torch.ones(2)),
        "ex_b/m": entry({"layers": [], "n_params": 0}, "module"),
        "ex_c/g": entry(torch.ones(2), "grad", visible=True, expected=torch.ones(2), name="x"),
    }
    student = {
        "ex_a/x": entry({"__unsupported__": "a generator"}),
        "ex_b/m": entry(object(), "module"),
        "ex_c/g": entry([1, {"a": None}], "grad"),
    }
    verdicts = compare_records(student, reference)
    assert not any(v.passed for v in verdicts.values())
    assert not any("could not be compared" in v.message for v in verdicts.values())


def test_gradient_records_say_why_there_is_no_gradient():
    reference = {"ex_g/x": entry(torch.ones(2), "grad", visible=True, expected=torch.ones(2), name="x")}
    missing = {"ex_g/x": entry({"__problem__": "{name}.grad is None: backward() was not called."}, "grad")}
    assert (
        "visible check 'x' failed: x.grad is None: backward() was not called."
        in compare_records(missing, reference)["ex_g"].message
    )


def test_classifier_kind_rebuilds_and_evaluates_the_prescribed_architecture():
    torch.manual_seed(0)
    untrained = build_apparel_classifier().state_dict()
    reference = {"ex07/w": entry(untrained, "classifier", architecture="apparel_mlp", min_accuracy=0.8)}
    verdict = compare_records({"ex07/w": entry(untrained, "classifier")}, reference)["ex07"]
    assert not verdict.passed and "below the required 0.80" in verdict.message
    wrong = compare_records({"ex07/w": entry({"weight": torch.ones(1)}, "classifier")}, reference)["ex07"]
    assert "do not fit the prescribed architecture" in wrong.message


def test_classifier_kind_names_a_weight_that_is_not_a_tensor():
    torch.manual_seed(0)
    weights = build_apparel_classifier().state_dict()
    reference = {"ex07/w": entry(weights, "classifier", architecture="apparel_mlp", min_accuracy=0.8)}
    meta = {**weights, "1.weight": {"__problem__": "{name} is a tensor on the meta device, which has no values."}}
    assert (
        "the weight '1.weight' is a tensor on the meta device"
        in compare_records({"ex07/w": entry(meta, "classifier")}, reference)["ex07"].message
    )
    numpy = {**weights, "1.bias": {"__what__": "a numpy.ndarray of shape (128,) and dtype float32"}}
    assert (
        "the weight '1.bias' of the state_dict should be a tensor, but it is a numpy.ndarray"
        in compare_records({"ex07/w": entry(numpy, "classifier")}, reference)["ex07"].message
    )


def test_a_missing_record_carries_the_reason_the_test_cell_stopped():
    from course_utils.grading.pipeline.verdicts import stop_of
    from course_utils.wording import unanswered

    reference = {
        "ex_a/visible": entry(torch.ones(2), visible=True, expected=torch.ones(2)),
        "ex_a/hidden": entry(torch.ones(2)),
    }
    failing = {"ex_a/visible": entry(torch.zeros(2))}
    said = compare_records(failing, reference)["ex_a"].message.split("failed: ", 2)[-1].splitlines()[0]
    verdict = compare_records(failing, reference, {"ex_a": stop_of("CheckFailure", said)})["ex_a"]
    assert verdict.message.endswith("1 test did not run ('hidden'): the test cell stopped at the failure above")
    verdict = compare_records({}, reference, {"ex_a": stop_of("NotImplementedError", unanswered("f"))})["ex_a"]
    assert verdict.message == unanswered("f")
    assert compare_records({}, reference, {"ex_a": stop_of("NotImplementedError", "")})["ex_a"].message == unanswered()


def test_an_unanswered_task_is_named_from_the_kernels_traceback_when_its_handler_was_not_installed():
    """A graded kernel imports the course before IPython's shell exists, so its NotImplementedError carries no
    sentence: the grade names the function from the traceback, in the words the learner's kernel uses."""
    from course_utils.grading.pipeline.verdicts import stop_of
    from course_utils.wording import unanswered

    traceback = [
        "\x1b[0;31mNotImplementedError\x1b[0m  Traceback (most recent call last)",
        "Cell In[2], line 4, in log_sigmoid(z)\n      1 def log_sigmoid(z):\n      3     # YOUR CODE HERE\n"
        "----> 4     raise NotImplementedError()\n",
        "NotImplementedError: ",
    ]
    assert stop_of("NotImplementedError", "", traceback).reason == unanswered("log_sigmoid")
    other = [*traceback[:1], "Cell In[2], line 4, in f(z)\n----> 4     raise NotImplementedError('later')\n", "x"]
    assert stop_of("NotImplementedError", "", other).reason == unanswered()
