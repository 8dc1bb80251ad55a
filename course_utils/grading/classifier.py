"""The trusted side of a training task: rebuild the prescribed network from recorded weights and test it.

    >>> classifier_problem(state_dict, {"architecture": "apparel_mlp", "min_accuracy": 0.8})  # doctest: +SKIP

A training task records the learner's trained ``state_dict`` (kind ``"classifier"``). The grader never
runs learner code: it loads the weights into the architecture the task prescribes (``ARCHITECTURES``)
and measures accuracy on the official test images itself.
"""
from __future__ import annotations

import torch
from torch import nn

from course_utils.answers import describe, is_problem, stated

APPAREL_HIDDEN = 128


def build_apparel_classifier() -> nn.Sequential:
    """Exercise 07's prescribed architecture: flatten, Linear(784, 128), ReLU, Linear(128, 10).

        >>> sum(p.numel() for p in build_apparel_classifier().parameters())
        101770
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, APPAREL_HIDDEN), nn.ReLU(),
                         nn.Linear(APPAREL_HIDDEN, 10))


#: architecture name (the record's ``architecture`` parameter) -> a builder of the untrained network
ARCHITECTURES = {"apparel_mlp": build_apparel_classifier}


def apparel_accuracy(model: nn.Module, split: str = "test") -> float:
    """Accuracy of ``model`` on a Fashion-MNIST split, inputs normalised as in ``course_utils.data``.

        >>> apparel_accuracy(build_apparel_classifier()) < 0.3  # untrained  # doctest: +SKIP
        True
    """
    from course_utils.data import load_fashion_mnist, normalize_images

    images, labels = load_fashion_mnist(split)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), 2000):
            logits = model(normalize_images(images[start:start + 2000]))
            correct += int((logits.argmax(dim=1) == labels[start:start + 2000]).sum())
    return correct / len(labels)


def classifier_problem(state_dict, params: dict) -> str | None:
    """What is wrong with a recorded trained network (None when it reaches the required accuracy)."""
    builder = ARCHITECTURES[params.get("architecture", "apparel_mlp")]
    if not isinstance(state_dict, dict):
        return f"expected the trained model's state_dict, got {describe(state_dict)}"
    for key, value in state_dict.items():
        if is_problem(value):
            return stated(value, f"the weight {key!r}")
        if not isinstance(value, torch.Tensor):
            return f"the weight {key!r} of the state_dict should be a tensor, but it is {describe(value)}"
    model = builder()
    try:
        model.load_state_dict(state_dict, strict=True)
    except Exception:
        return "the recorded weights do not fit the prescribed architecture (did you change the model?)"
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return "the trained weights contain NaN or inf (learning rate too large?)"
    accuracy = apparel_accuracy(model, params.get("split", "test"))
    floor = float(params.get("min_accuracy", 0.8))
    if accuracy < floor:
        return f"test accuracy {accuracy:.3f} is below the required {floor:.2f}"
    return None
