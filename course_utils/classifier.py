"""The rule for a trained classifier, the same on both sides: rebuild the network from plain data and test it.

    >>> classifier_problem(state_dict, {"architecture": "apparel_mlp", "min_accuracy": 0.8})  # doctest: +SKIP
    >>> classifier_problem({"layers": [...], "state_dict": {...}},
    ...                    {"architecture": "sequential", "max_params": 110_000, "input_shape": [28, 28],
    ...                     "min_accuracy": 0.8})  # doctest: +SKIP

A training task records the learner's trained network (kind ``"classifier"``). Either the task prescribes
the architecture (``ARCHITECTURES``) and the record is its ``state_dict``; or the learner designed it to a
spec (``architecture="sequential"``) and the record is ``course_utils.networks.describe_sequential``'s layer
list with the ``state_dict`` (``answers.answer("classifier", model)`` makes it from the model). The network is
rebuilt from the layer list (standard ``torch.nn`` layers only, ``course_utils.networks.build_sequential``),
checked against the spec (parameter budget, required layer types, input ``(B, *input_shape)`` to output
``(B, 10)``, a bounded amount of computation), given the recorded weights and measured on the official test
images. No learner code runs.

Both sides apply this rule: the learner's ``checks.check_classifier`` in the notebook (so what the notebook
says is what the grade says) and the grader's trusted verdict (``course_utils.grading.pipeline.verdicts``, on the record
file, with the parameters of the *solution's* record). Like every rule of ``course_utils.compare``, it judges a
raw value and its recorded form alike: it starts from ``answer("classifier", value)``.
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.answers import answer, describe, is_problem, stated
from course_utils.networks import NetworkSpecError, build_sequential, count_parameters

APPAREL_HIDDEN = 128


def build_apparel_classifier() -> nn.Sequential:
    """Exercise 07's former prescribed architecture: flatten, Linear(784, 128), ReLU, Linear(128, 10).

    >>> sum(p.numel() for p in build_apparel_classifier().parameters())
    101770
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, APPAREL_HIDDEN), nn.ReLU(), nn.Linear(APPAREL_HIDDEN, 10))


#: architecture name (the record's ``architecture`` parameter) -> a builder of the untrained network
ARCHITECTURES = {"apparel_mlp": build_apparel_classifier}


#: a designed network may hold at most this many numbers in one layer's output per image
MAX_ACTIVATION = 400_000
#: images per evaluation batch times the largest activation per image stays under this
MAX_BATCH_NUMBERS = 20_000_000


def apparel_accuracy(model: nn.Module, split: str = "test", input_shape=(28, 28), batch: int = 2000) -> float:
    """Accuracy of ``model`` on a Fashion-MNIST split, inputs normalised as in ``course_utils.data``.

    >>> apparel_accuracy(build_apparel_classifier()) < 0.3  # untrained  # doctest: +SKIP
    True
    """
    from course_utils.data import load_fashion_mnist, normalize_images

    images, labels = load_fashion_mnist(split)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch):
            x = normalize_images(images[start : start + batch]).reshape(-1, *input_shape)
            logits = model(x)
            correct += int((logits.argmax(dim=1) == labels[start : start + batch]).sum())
    return correct / len(labels)


def _largest_activation(model: nn.Sequential, input_shape) -> int:
    """The most numbers any layer outputs for one image (computed on the meta device: nothing allocated)."""
    h, largest = torch.zeros(1, *input_shape, device="meta"), 0
    with torch.no_grad():
        for layer in model:
            h = layer(h)
            largest = max(largest, h.numel())
    return largest


def _weights_problem(state_dict) -> str | None:
    """What is wrong with a recorded state_dict as such (None when it is a dict of plain tensors)."""
    if not isinstance(state_dict, dict):
        return f"expected the trained network's state_dict, got {describe(state_dict)}"
    for key, value in state_dict.items():
        if is_problem(value):
            return stated(value, f"the weight {key!r}")
        if not isinstance(value, torch.Tensor):
            return f"the weight {key!r} of the state_dict should be a tensor, but it is {describe(value)}"
    return None


def designed_network(value, params: dict) -> tuple[nn.Sequential | None, int, str | None]:
    """(the rebuilt network, its largest activation per image, None) for a recorded design that meets the
    task's spec, else (None, 0, the problem)."""
    model, largest, problem = _designed_network(answer("classifier", value), params)
    return (None, 0, problem) if problem else (model, largest, None)


def _designed_network(value, params: dict, name: str = "the network"):
    if not isinstance(value, dict) or set(value) != {"layers", "state_dict"}:
        return (
            None,
            0,
            (
                f"{name} should be an nn.Sequential of standard torch.nn layers (or its layer list and "
                f"weights), but it is {describe(value)}"
            ),
        )
    input_shape = tuple(int(n) for n in params.get("input_shape", (28, 28)))
    try:
        skeleton = build_sequential(value["layers"], device="meta")
    except NetworkSpecError as error:
        return None, 0, f"the network cannot be rebuilt: {error}"
    n_params, budget = count_parameters(skeleton), params.get("max_params")
    if budget is not None and n_params > int(budget):
        return None, 0, f"the network has {n_params:,} parameters, more than the {int(budget):,} allowed"
    kinds = [layer[0] for layer in value["layers"]]
    for required in params.get("required_layers") or []:
        if required not in kinds:
            return None, 0, f"the network has no {required} layer, which the task requires"
    try:
        largest = _largest_activation(skeleton, input_shape)
        out = skeleton(torch.zeros(2, *input_shape, device="meta"))
    except Exception as error:
        return (
            None,
            0,
            (f"the network fails on a batch of shape {(2, *input_shape)} ({type(error).__name__}: {str(error)[:120]})"),
        )
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 10):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else describe(out)
        return None, 0, f"the network maps a batch of shape {(2, *input_shape)} to {shape}, not (2, 10)"
    if largest > MAX_ACTIVATION:
        return None, 0, f"one layer outputs {largest:,} numbers per image, more than the {MAX_ACTIVATION:,} allowed"
    problem = _weights_problem(value["state_dict"])
    if problem:
        return None, 0, problem
    model = build_sequential(value["layers"])
    try:
        model.load_state_dict(value["state_dict"], strict=True)
    except Exception:
        return None, 0, "the recorded weights do not fit the recorded layers"
    return model, largest, None


def classifier_report(value, params: dict, *, name: str = "the network") -> tuple[str | None, float | None]:
    """(what is wrong or None, the measured test accuracy or None when it was not measured).

    The accuracy is measured only when the spec holds and ``min_accuracy`` (default 0.8) is above 0: every
    network reaches an accuracy of at least 0, so a floor of 0 (a task that checks the design only) never
    needs the test images.
    """
    value = answer("classifier", value)
    if is_problem(value):
        return stated(value, name), None
    input_shape, batch = tuple(int(n) for n in params.get("input_shape", (28, 28))), 2000
    if params.get("architecture") == "sequential":
        model, largest, problem = _designed_network(value, params, name)
        if problem:
            return problem, None
        batch = max(1, min(2000, MAX_BATCH_NUMBERS // max(1, largest)))
    else:
        builder = ARCHITECTURES[params.get("architecture", "apparel_mlp")]
        problem = _weights_problem(value)
        if problem:
            return (
                f"expected the trained model's state_dict, got {describe(value)}"
                if not isinstance(value, dict)
                else problem
            ), None
        model = builder()
        try:
            model.load_state_dict(value, strict=True)
        except Exception:
            return "the recorded weights do not fit the prescribed architecture (did you change the model?)", None
    if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
        return "the trained weights contain NaN or inf (learning rate too large?)", None
    floor = float(params.get("min_accuracy", 0.8))
    if not floor > 0:
        return None, None
    accuracy = apparel_accuracy(model, params.get("split", "test"), input_shape, batch)
    if accuracy < floor:
        return f"test accuracy {accuracy:.3f} is below the required {floor:.2f}", accuracy
    return None, accuracy


def classifier_problem(value, params: dict, *, name: str = "the network") -> str | None:
    """What is wrong with a trained network, raw or recorded (None when it meets the spec and the floor)."""
    return classifier_report(value, params, name=name)[0]
