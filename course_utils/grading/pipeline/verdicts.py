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

import re
from dataclasses import dataclass

import nbformat

from course_utils.compare import judge
from course_utils.grading.cells import grade_id, is_test_cell
from course_utils.wording import unanswered


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
    """None when the student's entry matches the reference entry, else a learner-facing message
    (``_MISSING`` when the entry was never recorded)."""
    params = dict(ref["params"])
    visible = bool(params.pop("visible", False))
    what = f"{'visible check' if visible else 'hidden test'} {label!r}"
    if got is None:
        return _MISSING + what
    expected = params.pop("expected") if "expected" in params else ref["value"]
    params.setdefault("name", "the network" if ref["kind"] == "classifier" else "the result")
    problem = judge(ref["kind"], got["value"], expected, reveal=visible, **params)
    return None if problem is None else f"{what} failed: {problem}"


_MISSING = "\0missing:"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Stop:
    """Why a test cell stopped before its end, as the learner's notebook showed it (an error's type and text)."""

    reason: str
    unanswered: bool = False


_STUB_FRAME = re.compile(r"^.*?, in ([\w.]+)\(.*\n(?:.*\n)*-+> *\d+ +raise NotImplementedError\(\)\s*$")


def _stub_function(traceback) -> str | None:
    """The function whose body is still nbgrader's stub, when a traceback ends in it (else None): what the learner's
    kernel names in the same words (``checks``), for kernels where IPython's handler was not installed."""
    frames = [_ANSI.sub("", str(line)) for line in traceback or []]
    match = _STUB_FRAME.match(frames[-2]) if len(frames) >= 2 else None
    return match.group(1) if match else None


def stop_of(ename: str, evalue: str, traceback=()) -> Stop:
    """The stop of a test cell that raised ``ename: evalue``, worded as the test cell and Validate word it.

    >>> stop_of("CheckFailure", "result has shape (2,), expected shape (3,).").reason
    'result has shape (2,), expected shape (3,).'
    >>> stop_of("NameError", "name 'x' is not defined").reason
    "NameError: name 'x' is not defined"
    """
    text = _ANSI.sub("", str(evalue)).strip()
    text = text if len(text) <= 500 else text[:497] + "..."
    if ename == "NotImplementedError":
        return Stop(text or unanswered(_stub_function(traceback)), unanswered=True)
    if ename == "CheckFailure":
        return Stop(text)
    return Stop(f"{ename}: {text}" if text else str(ename))


def stopped_cells(notebook) -> dict[str, Stop]:
    """grade id -> why its test cell stopped, for each test cell of an executed notebook (JSON text or node) that
    shows an error. The text is the learner's own output: it explains a missing record, it never scores one."""
    if notebook is None:
        return {}
    try:
        nb = nbformat.reads(notebook, as_version=4) if isinstance(notebook, str) else notebook
        stops = {}
        for cell in nb.cells:
            gid = grade_id(cell)
            if gid is None or not is_test_cell(cell) or gid in stops:
                continue
            error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
            if error is not None:
                stops[gid] = stop_of(
                    str(error.get("ename", "")), str(error.get("evalue", "")), error.get("traceback") or ()
                )
        return stops
    except Exception:  # an unreadable notebook explains nothing
        return {}


def _message(keys: list[str], problems: list[str], stop: Stop | None) -> str:
    missing = [p.removeprefix(_MISSING) for p in problems if p.startswith(_MISSING)]
    failed = [p for p in problems if not p.startswith(_MISSING)]
    if not problems:
        return f"all {len(keys)} tests passed"
    if stop is not None and missing and (stop.unanswered or not failed and len(missing) == len(keys)):
        return stop.reason
    lines = list(failed)
    if missing and stop is not None:
        said = any(stop.reason in line for line in failed)
        count = f"{len(missing)} test{'s' if len(missing) > 1 else ''}"
        lines.append(
            f"{count} did not run ({', '.join(m.split(' ', 2)[-1] for m in missing)}): the test cell stopped "
            + ("at the failure above" if said else f"at: {stop.reason}")
        )
    else:
        lines += [f"{m} was not recorded: did the cell run to the end?" for m in missing]
    return f"{len(problems)} of {len(keys)} tests failed:\n- " + "\n- ".join(lines)


def compare_records(student: dict, reference: dict, stopped: dict[str, Stop] | None = None) -> dict[str, Verdict]:
    """Trusted verdicts, one per grade id in ``reference``: passed iff every reference key matches.

        >>> compare_records({}, {"ex01_a/x": {"kind": "value", "value": 1, "params": {}}})["ex01_a"].passed
        False

    Matching uses the reference's kind and params; the student's params and extra keys are ignored. ``stopped``
    (``stopped_cells`` of the executed notebook) says why a test cell's later records are missing: the message
    then carries the reason the learner saw (a failed check, an unanswered task) instead of a guess.
    """
    by_grade: dict[str, list[str]] = {}
    for key in reference:
        by_grade.setdefault(key.split("/")[0], []).append(key)
    verdicts = {}
    for grade_id_, keys in sorted(by_grade.items()):
        problems = []
        for key in keys:
            try:
                problem = _compare_entry(key.split("/")[1], student.get(key), reference[key])
            except Exception as error:  # a malformed student value must fail this test, not the grader
                problem = f"test {key.split('/')[1]!r} failed: its value could not be compared ({type(error).__name__})"
            if problem:
                problems.append(problem)
        message = _message(keys, problems, (stopped or {}).get(grade_id_))
        verdicts[grade_id_] = Verdict(grade_id_, not problems, message)
    return verdicts
