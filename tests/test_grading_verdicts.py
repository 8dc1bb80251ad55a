"""Spec for course_utils.grading.verdicts (the grader's side): safe loading of record files and the trusted
comparison with the solution's records, including the classifier kind (course_utils.grading.classifier)."""
import os

import pytest
import torch

from course_utils.grading.classifier import build_apparel_classifier
from course_utils.grading.verdicts import compare_records, load_records


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
    assert "hidden test 'h' failed: the result has the wrong values (1 of 2 elements differ)" in message
    assert "123" not in message
    shape = compare_records({"ex_a/h": entry(torch.ones(3))}, reference)["ex_a"].message
    assert "expected shape differs" in shape and "(2,)" not in shape


def test_compare_records_uses_reference_params_not_the_students():
    reference = {"ex_a/x": entry(torch.tensor([1.0]), rtol=0.0, atol=1e-6)}
    student = {"ex_a/x": entry(torch.tensor([1.5]), rtol=10.0, atol=10.0)}
    assert not compare_records(student, reference)["ex_a"].passed


def test_compare_records_kinds():
    ref_module = {"layers": [["Linear", [[1, 2], [1]]]], "n_params": 3, "output_shape": None}
    assert compare_records({"m/x": entry(ref_module, "module")}, {"m/x": entry(ref_module, "module")})["m"].passed
    other = {"layers": [["Linear", [[2, 2], [2]]]], "n_params": 6, "output_shape": None}
    assert "parameter shapes of a Linear layer differ" in compare_records(
        {"m/x": entry(other, "module")}, {"m/x": entry(ref_module, "module")})["m"].message
    assert not compare_records({"v/x": entry("3", "value")}, {"v/x": entry(3, "value")})["v"].passed
    assert compare_records({"s/x": entry(torch.tensor(2.0), "scalar")}, {"s/x": entry(2.0, "scalar")})["s"].passed
    pair = [torch.ones(2), 5.0]
    assert compare_records({"l/x": entry(pair)}, {"l/x": entry([torch.ones(2), 5.0])})["l"].passed
    assert not compare_records({"l/x": entry([torch.ones(2), 4.0])}, {"l/x": entry(pair)})["l"].passed


def test_compare_records_survives_garbage_student_values():
    reference = {"ex_a/x": entry(torch.ones(2)), "ex_b/m": entry({"layers": [], "n_params": 0}, "module")}
    student = {"ex_a/x": entry({"__unsupported__": "a generator"}), "ex_b/m": entry(object(), "module")}
    verdicts = compare_records(student, reference)
    assert not verdicts["ex_a"].passed and not verdicts["ex_b"].passed


def test_classifier_kind_rebuilds_and_evaluates_the_prescribed_architecture():
    torch.manual_seed(0)
    untrained = build_apparel_classifier().state_dict()
    reference = {"ex07/w": entry(untrained, "classifier", architecture="apparel_mlp", min_accuracy=0.8)}
    verdict = compare_records({"ex07/w": entry(untrained, "classifier")}, reference)["ex07"]
    assert not verdict.passed and "below the required 0.80" in verdict.message
    wrong = compare_records({"ex07/w": entry({"weight": torch.ones(1)}, "classifier")}, reference)["ex07"]
    assert "do not fit the prescribed architecture" in wrong.message
