"""course_utils.networks (a designed network as data) and the grader's rebuild of it (grading.classifier).

The grader never runs learner code: it rebuilds the network from the recorded layer list with standard
torch.nn constructors, checks the spec, then measures accuracy itself.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from course_utils.classifier import MAX_ACTIVATION, classifier_problem, designed_network
from course_utils.networks import (
    LAYERS,
    NetworkSpecError,
    build_sequential,
    count_parameters,
    describe_sequential,
)

SPEC = {"architecture": "sequential", "max_params": 20_000, "input_shape": [1, 28, 28], "required_layers": ["Conv2d"]}


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=2, padding=(1, 2)),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(8 * 6 * 7, 10),
    )


def test_a_description_rebuilds_the_same_network():
    model = small_cnn()
    spec = describe_sequential(model)
    rebuilt = build_sequential(spec["layers"])
    rebuilt.load_state_dict(spec["state_dict"])
    model.eval(), rebuilt.eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model(x), rebuilt(x)) and str(model) == str(rebuilt)


@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Linear(2, 3), "should be an nn.Sequential"),
        (nn.Sequential(nn.Sequential(nn.Linear(2, 3))), "Sequential is not one of the layers"),
        (nn.Sequential(nn.LSTM(2, 3)), "LSTM is not one of the layers"),
        (nn.Sequential(type("MyLinear", (nn.Linear,), {})(2, 3)), "MyLinear is not one of the layers"),
    ],
)
def test_only_a_flat_sequential_of_standard_layers_can_be_described(model, message):
    with pytest.raises(NetworkSpecError, match=message):
        describe_sequential(model)


@pytest.mark.parametrize(
    "layers, message",
    [
        ([["Lambda", {}]], "not an allowed layer type"),
        ([["Linear", {"in_features": 2}]], "should have the arguments"),
        (
            [["Linear", {"in_features": "__import__('os').system('ls')", "out_features": 2, "bias": True}]],
            "cannot be rebuilt",
        ),
        ([["Linear", {"in_features": 2**40, "out_features": 2, "bias": True}]], "out of range"),
        ([["Linear", {"in_features": -3, "out_features": 2, "bias": True}]], "cannot be built"),
        ("not a list", "expected a list"),
    ],
)
def test_the_rebuild_refuses_anything_but_plain_arguments_of_known_layers(layers, message):
    with pytest.raises(NetworkSpecError, match=message):
        build_sequential(layers)


def test_every_layer_type_round_trips():
    examples = {
        "Linear": nn.Linear(4, 3),
        "Conv2d": nn.Conv2d(2, 3, (3, 1), groups=1),
        "BatchNorm1d": nn.BatchNorm1d(4),
        "BatchNorm2d": nn.BatchNorm2d(2),
        "MaxPool2d": nn.MaxPool2d(2),
        "AvgPool2d": nn.AvgPool2d(3, 1, 1),
        "AdaptiveAvgPool2d": nn.AdaptiveAvgPool2d((2, 2)),
        "AdaptiveMaxPool2d": nn.AdaptiveMaxPool2d(1),
        "Flatten": nn.Flatten(),
        "Unflatten": nn.Unflatten(1, (2, 2)),
        "Dropout": nn.Dropout(0.3),
        "Dropout2d": nn.Dropout2d(0.2),
        "ReLU": nn.ReLU(),
        "LeakyReLU": nn.LeakyReLU(0.2),
        "ELU": nn.ELU(),
        "GELU": nn.GELU("tanh"),
        "SiLU": nn.SiLU(),
        "Tanh": nn.Tanh(),
        "Sigmoid": nn.Sigmoid(),
        "Identity": nn.Identity(),
    }
    assert set(examples) == set(LAYERS)
    for kind, layer in examples.items():
        rebuilt = build_sequential(describe_sequential(nn.Sequential(layer))["layers"])[0]
        assert repr(rebuilt) == repr(layer), kind


def test_the_spec_is_checked_before_anything_is_allocated():
    assert designed_network(describe_sequential(small_cnn()), SPEC)[2] is None
    huge = {"layers": [["Linear", {"in_features": 10**6, "out_features": 10**6, "bias": True}]], "state_dict": {}}
    assert "parameters, more than the 20,000 allowed" in designed_network(huge, SPEC)[2]
    mlp = describe_sequential(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    assert "has no Conv2d layer" in designed_network(mlp, SPEC)[2]
    wrong_out = describe_sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 5)))
    assert "to (2, 5), not (2, 10)" in designed_network(wrong_out, SPEC)[2]
    wide = describe_sequential(
        nn.Sequential(nn.Conv2d(1, 600, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(600, 10))
    )
    assert f"more than the {MAX_ACTIVATION:,} allowed" in designed_network(wide, {**SPEC, "max_params": 10**6})[2]
    mismatched = describe_sequential(small_cnn())
    mismatched["state_dict"] = describe_sequential(nn.Sequential(nn.Linear(2, 2)))["state_dict"]
    assert "do not fit the recorded layers" in designed_network(mismatched, SPEC)[2]


def test_count_parameters_counts_weights_not_buffers():
    assert count_parameters(nn.BatchNorm1d(4)) == 8


@pytest.mark.slow
def test_the_grader_measures_a_designed_network_on_the_test_set():
    spec = describe_sequential(small_cnn())  # untrained: about 10%
    assert classifier_problem(spec, {**SPEC, "min_accuracy": 0.0}) is None
    assert "is below the required 0.80" in classifier_problem(spec, {**SPEC, "min_accuracy": 0.8})


def test_a_design_is_judged_the_same_raw_or_recorded():
    """The classifier rule starts from answers.answer("classifier", ...), like every rule of compare.judge: the
    model itself, its description (tuples and all) and the recorded plain form get the same verdict."""
    from course_utils.answers import answer

    spec = {**SPEC, "min_accuracy": 0.0}
    model = small_cnn()
    design = describe_sequential(model)
    as_tuples = {"layers": [tuple(layer) for layer in design["layers"]], "state_dict": design["state_dict"]}
    for value in (model, design, as_tuples, answer("classifier", model), answer("classifier", as_tuples)):
        assert classifier_problem(value, spec) is None
    grown = nn.Sequential(*small_cnn(), nn.Linear(10, 2000), nn.Linear(2000, 10))
    assert "more than the 20,000 allowed" in classifier_problem(grown, spec)
    assert classifier_problem(grown, spec) == classifier_problem(answer("classifier", grown), spec)


@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Linear(784, 10), "cannot be rebuilt by the grader: the network should be an nn.Sequential"),
        (nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1)), "Softmax is not one of the layers"),
        (
            [nn.Flatten()],
            "should be an nn.Sequential of standard torch.nn layers (or its layer list and weights), but it "
            "is a list of length 1",
        ),
        (
            nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).to("meta"),
            "the weight '1.weight' is a tensor on the meta device",
        ),
    ],
)
def test_a_network_the_grader_cannot_rebuild_fails_with_the_reason(model, message):
    from course_utils.checks import CheckFailure, check_classifier

    with pytest.raises(CheckFailure, match=re.escape(message)):
        check_classifier(model, input_shape=(28, 28))


def test_check_classifier_records_what_the_grader_judges_with_the_same_message(tmp_path, monkeypatch):
    from course_utils import checks
    from course_utils.grading.pipeline.verdicts import compare_records
    from course_utils.records import load_records

    reference, student = tmp_path / "reference.pt", tmp_path / "student.pt"
    spec = dict(
        max_params=20_000, required_layers=["Conv2d"], input_shape=(1, 28, 28), hint="add a Conv2d", key="ex_net/spec"
    )
    monkeypatch.setenv(checks.RECORD_ENV, str(reference))
    checks.check_classifier(small_cnn(), **spec)
    monkeypatch.setenv(checks.RECORD_ENV, str(student))
    flat = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(checks.CheckFailure) as failure:
        checks.check_classifier(flat, **spec)
    verdict = compare_records(load_records(student), load_records(reference))["ex_net"]
    assert not verdict.passed and str(failure.value) in verdict.message and "has no Conv2d layer" in verdict.message


def test_a_floor_of_zero_checks_the_design_without_the_test_images(monkeypatch):
    import course_utils.classifier as rule

    monkeypatch.setattr(rule, "apparel_accuracy", lambda *args, **kwargs: pytest.fail("measured accuracy"))
    assert classifier_problem(small_cnn(), {**SPEC, "min_accuracy": 0.0}) is None
    broken = small_cnn()
    with torch.no_grad():
        broken[0].weight[0, 0, 0, 0] = float("nan")
    assert "contain NaN or inf" in classifier_problem(broken, {**SPEC, "min_accuracy": 0.0})
