"""Read a record file from a kernel (untrusted bytes) so that nothing in it can hurt the grader.

    >>> records = load_record_bytes(data, cap=64 * 2**20)   # doctest: +SKIP

Checked before anything is unpickled: the file is a torch zip archive whose members unpack to at most
``cap`` bytes. Loaded with ``weights_only=True`` (no pickled code runs). Checked after loading, without
recursion: the nesting depth, the number of containers and items, and the logical size of every tensor
(a stride-0 view of one number still counts as the size a comparison would make of it). Then the layout
(``course_utils.grading.verdicts``) is checked as for any record file.
"""
from __future__ import annotations

import io
import zipfile

import torch

from course_utils.grading.verdicts import _validate

MAX_DEPTH = 16
MAX_ITEMS = 100_000


class RecordError(ValueError):
    """The record file is refused; the message says why (it is shown to the learner)."""


def _unpacked_size(data: bytes) -> int:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise RecordError(f"the record file is not a record archive ({type(error).__name__})") from None


def check_structure(value, cap: int) -> None:
    """Refuse deep nesting, too many items, and tensors whose logical size exceeds ``cap`` (iteratively)."""
    stack, items, tensor_bytes = [(value, 0)], 0, 0
    while stack:
        item, depth = stack.pop()
        items += 1
        if depth > MAX_DEPTH:
            raise RecordError(f"the recorded values are nested more than {MAX_DEPTH} levels deep")
        if items > MAX_ITEMS:
            raise RecordError(f"the record file holds more than {MAX_ITEMS} values")
        if isinstance(item, torch.Tensor):
            tensor_bytes += item.numel() * item.element_size()
            if tensor_bytes > cap:
                raise RecordError(f"the recorded tensors hold more than {cap // 2**20} MiB")
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth + 1) for k in item.keys())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, (str, bytes)) and len(item) > cap:
            raise RecordError(f"a recorded string is over {cap // 2**20} MiB")


def load_record_bytes(data: bytes, cap: int) -> dict:
    """The records in ``data`` (a kernel's ``records.pt``), or RecordError saying why they are refused."""
    if len(data) > cap or _unpacked_size(data) > cap:
        raise RecordError(f"the record file unpacks to more than {cap // 2**20} MiB")
    try:
        records = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except RecursionError:
        raise RecordError(f"the recorded values are nested more than {MAX_DEPTH} levels deep") from None
    except Exception as error:  # corrupt, truncated, or holds objects that are not plain data
        raise RecordError(f"the record file cannot be read safely ({type(error).__name__}: {str(error)[:200]})") from None
    check_structure(records, cap)
    try:
        _validate(records, "(from the kernel)")
    except ValueError as error:
        raise RecordError(str(error)) from None
    return records
