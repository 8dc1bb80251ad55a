"""Trusted verdicts: read a notebook's record file safely and compare it with the solution's records.

    >>> verdicts = compare_records(student_records, reference_records)  # doctest: +SKIP
    >>> verdicts["ex01_arange_matrix"].passed, verdicts["ex01_arange_matrix"].message  # doctest: +SKIP

This runs only in the grader's own process, never in a learner's kernel. The record file is written by
``course_utils.checks.record`` inside the (jailed) kernel, so it is untrusted input: it is loaded with
``weights_only=True`` (no pickled code runs), its layout is checked, and each entry is compared with the
*reference's* kind and parameters using the same rule as the visible checks (``course_utils.compare.judge``;
for a trained network, ``course_utils.classifier``).
A visible check's reference entry carries the rule the check applied in the solution notebook (expected
value, tolerances, name, hint), so the verdict and its message are the ones the learner saw; a hidden
test's reference value is the expected value, and its message never reveals it.
"""
from __future__ import annotations

from dataclasses import dataclass

from course_utils.compare import judge


@dataclass(frozen=True)
class Verdict:
    """The trusted outcome for one graded test cell.

        >>> Verdict("ex01_arange_matrix", True, "all 3 tests passed").passed
        True
    """
    grade_id: str
    passed: bool
    message: str


def _compare_entry(label: str, got: dict | None, ref: dict) -> str | None:
    """None when the student's entry matches the reference entry, else a learner-facing message."""
    params = dict(ref["params"])
    visible = bool(params.pop("visible", False))
    what = f"{'visible check' if visible else 'hidden test'} {label!r}"
    if got is None:
        return f"{what} was not recorded: did the cell run to the end?"
    expected = params.pop("expected") if "expected" in params else ref["value"]
    params.setdefault("name", "the network" if ref["kind"] == "classifier" else "the result")
    problem = judge(ref["kind"], got["value"], expected, reveal=visible, **params)
    return None if problem is None else f"{what} failed: {problem}"


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
