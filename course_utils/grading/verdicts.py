"""Trusted verdicts: read a notebook's record file safely and compare it with the solution's records.

    >>> verdicts = compare_records(load_records("student.pt"), load_records("reference.pt"))  # doctest: +SKIP
    >>> verdicts["ex01_arange_matrix"].passed, verdicts["ex01_arange_matrix"].message

This runs only in the grader's own process, never in a learner's kernel. The record file is written by
``course_utils.checks.record`` inside the (jailed) kernel, so it is untrusted input: it is loaded with
``weights_only=True`` (no pickled code runs), its layout is checked, and each entry is compared with the
*reference's* kind and parameters using the same rules as the visible checks (``course_utils.compare``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from course_utils.checks import KINDS, RECORD_ENV
from course_utils.compare import describe, module_summary_problem, scalar_problem, tensor_problem
from course_utils.grading.classifier import classifier_problem


@dataclass(frozen=True)
class Verdict:
    """The trusted outcome for one graded test cell.

        >>> Verdict("ex01_arange_matrix", True, "all 3 tests passed").passed
        True
    """
    grade_id: str
    passed: bool
    message: str


def load_records(path) -> dict:
    """Read a record file safely (``weights_only=True``: no pickled code runs) and check its layout.

        >>> load_records("grading/references/01_tensors_vs_numpy/01_tensors_vs_numpy_exercises.pt")  # doctest: +SKIP
        {'ex01_arange_matrix/visible': {'kind': 'tensor', 'value': tensor(...), 'params': {...}}}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No record file at {path}: the notebook recorded nothing "
                                f"(was {RECORD_ENV} set, and did any test cell run?).")
    try:
        records = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # corrupt, truncated, or holds objects that are not plain data
        raise ValueError(f"Record file {path} cannot be read safely ({type(error).__name__}: "
                         f"{str(error)[:200]}). Re-run the notebook to write it again.") from None
    _validate(records, path)
    return records


def _validate(records, path) -> None:
    if not isinstance(records, dict):
        raise ValueError(f"Record file {path} holds {describe(records)}, not a dict of records.")
    for key, entry in records.items():
        problem = None
        if not isinstance(key, str) or key.count("/") != 1:
            problem = f"key {key!r} is not 'grade_id/label'"
        elif not isinstance(entry, dict) or set(entry) != {"kind", "value", "params"}:
            problem = f"entry {key!r} is not a dict with kind, value and params"
        elif entry["kind"] not in KINDS or not isinstance(entry["params"], dict):
            problem = f"entry {key!r} has an unknown kind or params that are not a dict"
        if problem:
            raise ValueError(f"Record file {path} is malformed: {problem}.")


def _compare_entry(label: str, got: dict | None, ref: dict) -> str | None:
    """None when the student's entry matches the reference entry, else a learner-facing message."""
    params, visible = ref["params"], bool(ref["params"].get("visible"))
    what = f"{'visible check' if visible else 'hidden test'} {label!r}"
    if got is None:
        return f"{what} was not recorded: did the cell run to the end?"
    kind, value, expected = ref["kind"], got["value"], ref["value"]
    if kind == "tensor" and isinstance(expected, list):
        if not isinstance(value, list) or len(value) != len(expected):
            problem = f"expected {len(expected)} tensors, got {describe(value)}"
        else:
            problems = [_compare_entry(f"{label}[{i}]", {"value": v},
                                       {"kind": "tensor" if isinstance(e, torch.Tensor) or e is None else "scalar",
                                        "value": e, "params": params})
                        for i, (v, e) in enumerate(zip(value, expected))]
            problem = next((p.split(" failed: ", 1)[1] for p in problems if p), None)
    elif kind == "tensor":
        if expected is None:
            problem = None if value is None else "expected no value"
        elif value is None:
            problem = "no value (for a gradient: .grad was None; was requires_grad set and backward called?)"
        else:
            problem = tensor_problem(value, expected, rtol=params.get("rtol", 1e-5),
                                     atol=params.get("atol", 1e-8), check_dtype=params.get("check_dtype", True),
                                     name="the result", reveal=visible)
    elif kind == "scalar":
        problem = scalar_problem(value, float(expected), rtol=params.get("rtol", 1e-6),
                                 atol=params.get("atol", 1e-8), name="the result", reveal=visible)
    elif kind == "value":
        problem = None if _plain_equal(value, expected) else "the result differs"
    elif kind == "module":
        problem = module_summary_problem(value, expected, reveal=visible)
    elif kind == "constraint":  # what the kernel saw; the grader also checks the cells (grading.constraints)
        problem = (None if value == [] else value[0] if isinstance(value, list) and value and isinstance(value[0], str)
                   else f"the constraint check recorded {describe(value)}")
    else:  # classifier
        problem = classifier_problem(value, params)
    return None if problem is None else f"{what} failed: {problem}"


def _plain_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool((a == b).all()))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_plain_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_plain_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def compare_records(student: dict, reference: dict) -> dict[str, Verdict]:
    """Trusted verdicts, one per grade id in ``reference``: passed iff every reference key matches.

        >>> compare_records({}, {"ex01_a/x": {"kind": "value", "value": 1, "params": {}}})["ex01_a"].passed
        False

    Matching uses the reference's kind and params; the student's params and extra keys are ignored.
    """
    by_grade: dict[str, list[str]] = {}
    for key in sorted(reference):
        by_grade.setdefault(key.split("/")[0], []).append(key)
    verdicts = {}
    for grade_id, keys in by_grade.items():
        problems = []
        for key in keys:
            try:
                problem = _compare_entry(key.split("/")[1], student.get(key), reference[key])
            except Exception as error:  # a malformed student value must fail this test, not the grader
                problem = f"test {key.split('/')[1]!r} failed: its value could not be compared ({type(error).__name__})"
            if problem:
                problems.append(problem)
        message = (f"all {len(keys)} tests passed" if not problems
                   else f"{len(problems)} of {len(keys)} tests failed:\n- " + "\n- ".join(problems))
        verdicts[grade_id] = Verdict(grade_id, not problems, message)
    return verdicts
