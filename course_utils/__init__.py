"""PyTorch Foundations helpers: one small call per chore, so the notebooks stay about the idea.

    >>> from course_utils import get_device, load_fashion_mnist
"""
from course_utils.data import (CLASS_NAMES, FashionMNIST, export_competition_layout, load_fashion_mnist,
                               make_loaders, read_competition_layout, score_submission, write_submission)
from course_utils.device import device_report, get_device

__all__ = [
    "CLASS_NAMES", "FashionMNIST", "device_report", "export_competition_layout", "get_device",
    "load_fashion_mnist", "make_loaders", "read_competition_layout", "score_submission", "write_submission",
]
