"""Pick the device the course runs on, and describe it.

    >>> from course_utils.device import get_device
    >>> x = torch.ones(3, device=get_device())

`get_device()` prefers CUDA, then Apple's MPS, then the CPU. Set the environment variable
``COURSE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) to choose one yourself.
"""

from __future__ import annotations

import os

import torch

from course_utils import env

ENV_VAR = env.DEVICE


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Names of every device usable here, e.g. ``['cpu', 'cuda', 'cuda:0']``.

    >>> 'cpu' in available_devices()
    True
    """
    names = ["cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def _device_from_env(choice: str) -> torch.device:
    wanted = choice.strip().lower()
    usable = available_devices()
    if wanted not in usable:
        raise ValueError(
            f"{ENV_VAR}={choice!r} is not a device you can use here. "
            f"Available: {', '.join(usable)}. "
            f"Set {ENV_VAR} to one of those, or unset it to pick automatically."
        )
    return torch.device(wanted)


def get_device() -> torch.device:
    """The best device here: cuda, else mps, else cpu (``COURSE_DEVICE`` overrides).

    >>> get_device()
    device(type='cpu')
    """
    choice = os.environ.get(ENV_VAR, "").strip()
    if choice:
        return _device_from_env(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_report() -> str:
    """A few lines for the top of a notebook: torch version, device, GPU, CPU threads.

    >>> print(device_report())  # doctest: +SKIP
    torch 2.13.0 | device: cpu | CPU threads: 2
    """
    device = get_device()
    parts = [f"torch {torch.__version__}", f"device: {device}"]
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        parts.append(f"GPU: {props.name} ({props.total_memory / 2**30:.1f} GiB)")
    elif device.type == "mps":
        parts.append("GPU: Apple MPS")
    parts.append(f"CPU threads: {torch.get_num_threads()}")
    return " | ".join(parts)
