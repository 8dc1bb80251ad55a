"""The record file: the one contract between a learner's kernel and the grader.

    >>> check_key("ex01_make_tensor/hidden", "tensor")
    >>> validate({"ex01_a/x": {"kind": "value", "value": 1, "params": {}}}, "example")

A test cell's ``record`` (``course_utils.checks``) writes, to the file named by ``COURSE_RECORD_FILE``
(``FILE_NAME`` inside the jail), one dict saved with ``torch.save``::

    {"<grade_id>/<label>": {"kind": <one of compare.KINDS>, "value": <plain data>, "params": {...}}, ...}

The grader reads it as untrusted bytes (:func:`load_record_bytes`): the archive's unpacked size is checked
before anything is unpickled, it is loaded with ``weights_only=True`` (no pickled code runs), its nesting,
item count and tensor sizes are checked without recursion, then its layout (:func:`validate`). A refusal
says what was wrong (and which entry, by its place in the file) but never quotes the file: its keys and
values are whatever the kernel wrote, and the message reaches the learner's feedback. The solution
notebook's records, made by the grader itself, are read back with :func:`load_records`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from course_utils import env
from course_utils.atomic import replacing

#: the record file's name inside the jail, and the variable naming its path in a kernel
FILE_NAME = "records.pt"
ENV = env.RECORD_FILE
MAX_DEPTH = 16
MAX_ITEMS = 100_000
#: the most one record may hold (its value and its rule), and the most one kernel records in all: the checks
#: refuse a bigger answer in the learner's kernel (``checks``), so it fails its own test and never the file
MAX_ENTRY_BYTES = 16 * 2**20
MAX_KERNEL_BYTES = 48 * 2**20


class RecordError(ValueError):
    """A record file is refused; the message says why (it is shown to the learner)."""


def check_key(key, kind: str) -> None:
    """Refuse a key that is not ``grade_id/label`` or a kind the grader cannot judge (the learner's mistake)."""
    from course_utils.compare import KINDS

    if not isinstance(key, str) or key.count("/") != 1 or not all(key.split("/")):
        raise ValueError(f"record key must look like 'grade_id/label', not {key!r}.")
    if kind not in KINDS:
        raise ValueError(f"record kind must be one of {KINDS}, not {kind!r}.")


def write(path: Path, records: dict) -> None:
    """Save ``records`` (plain data) to ``path`` atomically: a kernel killed mid-write leaves the old file."""
    import torch

    with replacing(Path(path)) as tmp:
        torch.save(records, tmp)


def validate(records, source) -> None:
    """Raise ValueError unless ``records`` has the layout above (``source`` names it in the message; the
    message names an entry by its position, never by its key).

        >>> validate({"LEAK: hidden test source": 1}, "(from the kernel)")
        Traceback (most recent call last):
        ...
        ValueError: Record file (from the kernel) is malformed: the key of entry 1 is not 'grade_id/label'.
    """
    from course_utils.compare import KINDS

    if not isinstance(records, dict):
        raise ValueError(f"Record file {source} holds a {type(records).__name__}, not a dict of records.")
    for position, (key, entry) in enumerate(records.items(), 1):
        problem = None
        if not isinstance(key, str) or key.count("/") != 1:
            problem = f"the key of entry {position} is not 'grade_id/label'"
        elif not isinstance(entry, dict) or set(entry) != {"kind", "value", "params"}:
            problem = f"entry {position} is not a dict with kind, value and params"
        elif not isinstance(entry["kind"], str) or entry["kind"] not in KINDS or not isinstance(entry["params"], dict):
            problem = f"entry {position} has an unknown kind or params that are not a dict"
        if problem:
            raise ValueError(f"Record file {source} is malformed: {problem}.")


def load_records(path) -> dict:
    """Read a record file the grader made itself (a reference), checking its layout.

    >>> load_records("grading/references/01_tensors_vs_numpy/01_tensors_vs_numpy_exercises.pt")  # doctest: +SKIP
    {'ex01_arange_matrix/visible': {'kind': 'tensor', 'value': tensor(...), 'params': {...}}}
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No record file at {path}: the notebook recorded nothing (was {ENV} set, and did any test cell run?)."
        )
    try:
        records = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # corrupt, truncated, or holds objects that are not plain data
        raise ValueError(
            f"Record file {path} cannot be read safely ({type(error).__name__}: "
            f"{str(error)[:200]}). Re-run the notebook to write it again."
        ) from None
    validate(records, path)
    return records


def _unpacked_size(data: bytes) -> int:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise RecordError(f"the record file is not a record archive ({type(error).__name__})") from None


def check_structure(value, cap: int) -> None:
    """Refuse deep nesting, too many items, and tensors whose logical size exceeds ``cap`` (iteratively)."""
    import torch

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
    """The records in ``data`` (a kernel's record file), or RecordError saying why they are refused."""
    import torch

    if len(data) > cap or _unpacked_size(data) > cap:
        raise RecordError(f"the record file unpacks to more than {cap // 2**20} MiB")
    try:
        records = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except RecursionError:
        raise RecordError(f"the recorded values are nested more than {MAX_DEPTH} levels deep") from None
    except Exception as error:  # corrupt, truncated, or holds objects that are not plain data; torch's message
        # names what it refused (a class, a module), which the kernel chose: only the error's type is shown
        raise RecordError(
            f"the record file cannot be read safely ({type(error).__name__}); record plain data "
            "(tensors, numbers, strings, lists, dicts) only"
        ) from None
    check_structure(records, cap)
    try:
        validate(records, "(from the kernel)")
    except ValueError as error:
        raise RecordError(str(error)) from None
    return records
