"""PyTorch Foundations helpers: one small call per chore, so the notebooks stay about the idea.

    >>> from course_utils import get_device, load_fashion_mnist
"""
from course_utils.device import device_report, get_device

__all__ = ["get_device", "device_report"]
