"""Networks a learner designs to a spec, described as data so the grader can rebuild them without running their code.

    >>> spec = describe_sequential(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    >>> spec["layers"]
    [['Flatten', {'start_dim': 1, 'end_dim': -1}], ['Linear', {'in_features': 784, 'out_features': 10, 'bias': True}]]
    >>> build_sequential(spec["layers"])        # the same architecture, built from the description
    Sequential(
      (0): Flatten(start_dim=1, end_dim=-1)
      (1): Linear(in_features=784, out_features=10, bias=True)
    )

A design task asks for an ``nn.Sequential`` of standard ``torch.nn`` layers (:data:`LAYERS`, not nested).
In the learner's kernel, :func:`describe_sequential` reads each layer's constructor arguments back from the
layer; the test cell records that list with the trained ``state_dict``. The grader
(``course_utils.classifier``) rebuilds the network from the list with :func:`build_sequential`,
which only ever calls the constructors of :data:`LAYERS` with plain numbers, booleans and short strings,
checks the spec (parameter budget, input and output shapes) and measures accuracy itself.
"""

from __future__ import annotations

import torch
from torch import nn

#: layer type -> the constructor arguments read back from an instance (attributes of the same name)
LAYERS: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features", "bias"),
    "Conv2d": (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "bias",
        "padding_mode",
    ),
    "BatchNorm1d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "MaxPool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "AdaptiveAvgPool2d": ("output_size",),
    "AdaptiveMaxPool2d": ("output_size",),
    "Flatten": ("start_dim", "end_dim"),
    "Unflatten": ("dim", "unflattened_size"),
    "Dropout": ("p",),
    "Dropout2d": ("p",),
    "ReLU": (),
    "LeakyReLU": ("negative_slope",),
    "ELU": ("alpha",),
    "GELU": ("approximate",),
    "SiLU": (),
    "Tanh": (),
    "Sigmoid": (),
    "Identity": (),
}
#: at most this many layers in a described network
MAX_LAYERS = 64


class NetworkSpecError(ValueError):
    """A network that cannot be described (learner side) or rebuilt (grader side); the message says why."""


def _plain(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, str)):
        return type(value)(value) if not isinstance(value, str) else str(value)
    if isinstance(value, (tuple, list, torch.Size)):
        return [_plain(v) for v in value]
    raise NetworkSpecError(f"an argument of type {type(value).__name__} cannot be described")


def describe_layer(layer: nn.Module) -> list:
    """``[type name, {argument: value}]`` for one layer of :data:`LAYERS`.

    >>> describe_layer(nn.ReLU())
    ['ReLU', {}]
    """
    kind = type(layer).__name__
    if type(layer) is not getattr(nn, kind, None) or kind not in LAYERS:
        raise NetworkSpecError(
            f"{kind} is not one of the layers a design task may use: "
            f"{', '.join(LAYERS)} (from torch.nn, not subclassed)"
        )
    args = {}
    for name in LAYERS[kind]:
        value = getattr(layer, name)
        args[name] = (value is not None) if name == "bias" else _plain(value)
    return [kind, args]


def describe_layers(model) -> list:
    """The layer list of :func:`describe_sequential` (without the weights).

    >>> describe_layers(nn.Sequential(nn.ReLU()))
    [['ReLU', {}]]
    """
    if type(model) is not nn.Sequential:
        raise NetworkSpecError(
            f"the network should be an nn.Sequential (a plain one, not a subclass), not {type(model).__name__}"
        )
    if len(model) > MAX_LAYERS:
        raise NetworkSpecError(f"the network has {len(model)} layers; at most {MAX_LAYERS} are allowed")
    return [describe_layer(layer) for layer in model]


def describe_sequential(model) -> dict:
    """``{"layers": [...], "state_dict": {...}}`` for an ``nn.Sequential`` of :data:`LAYERS` (not nested).

    >>> len(describe_sequential(nn.Sequential(nn.Linear(2, 1)))["layers"])
    1
    """
    layers = describe_layers(model)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"layers": layers, "state_dict": state}


def _argument(value, depth: int = 0):
    """A recorded argument back as a constructor argument: numbers, booleans, short strings, tuples of them."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not -(2**31) <= value < 2**31:
            raise NetworkSpecError(f"argument {value} is out of range")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, str) and len(value) <= 16:
        return value
    if isinstance(value, list) and depth == 0 and len(value) <= 4:
        return tuple(_argument(v, 1) for v in value)
    raise NetworkSpecError(f"an argument of this kind cannot be rebuilt: {str(value)[:40]!r}")


def build_sequential(layers, device=None) -> nn.Sequential:
    """The ``nn.Sequential`` that a :func:`describe_sequential` layer list describes (the grader's side).

    Only constructors of :data:`LAYERS` run, with checked plain arguments. With ``device="meta"`` no
    memory is allocated (to count parameters before building a network for real).
    """
    if not isinstance(layers, list) or not 0 < len(layers) <= MAX_LAYERS:
        raise NetworkSpecError(f"expected a list of 1 to {MAX_LAYERS} layers")
    modules = []
    for entry in layers:
        if not (
            isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict)
        ):
            raise NetworkSpecError("each layer should be [type name, {arguments}]")
        kind, args = entry
        if kind not in LAYERS:
            raise NetworkSpecError(f"{kind!r} is not an allowed layer type")
        if set(args) != set(LAYERS[kind]):
            raise NetworkSpecError(f"a {kind} layer should have the arguments {list(LAYERS[kind])}")
        kwargs = {name: _argument(value) for name, value in args.items()}
        try:
            with torch.device(device or "cpu"):
                modules.append(getattr(nn, kind)(**kwargs))
        except Exception as error:
            raise NetworkSpecError(f"a {kind} layer cannot be built with {kwargs} ({type(error).__name__})") from None
    return nn.Sequential(*modules)


def count_parameters(model: nn.Module) -> int:
    """The number of parameters (buffers such as batch-norm statistics not included).

    >>> count_parameters(nn.Linear(784, 10))
    7850
    """
    return sum(p.numel() for p in model.parameters())
