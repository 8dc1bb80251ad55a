"""Grading throughput: the course's pipeline vs plain serial ``nbgrader autograde``, same submissions, same run.

    $ python -m bench.grading_throughput            # 20 submissions of exercise 01
    >>> figures = run(n_submissions=20)              # doctest: +SKIP
    >>> figures["speedup_sandboxed"]                 # doctest: +SKIP

Three graders, each on its own copy of the course, on the same ``n_submissions`` honest notebooks (correct,
partial and wrong answers from ``course_utils.grading.samples.honest_class``; no attacks, which fool
plain nbgrader by design):

* ``nbgrader``: nbgrader's own ``autograde`` app (through ``NbGraderAPI``) on every student, serially;
* ``sandboxed``: ``course_utils.grading.autograde`` with 2 workers, every kernel jailed, including the
  one-off run of the solution notebook that makes the reference records (cold cache);
* ``no_sandbox``: the same with ``sandboxed=False`` (the difference is the sandbox's overhead).

All three run in this one process, so library imports are paid once and excluded; releasing the
assignment into each copy's gradebook (needed by both graders) is excluded too. The bench asserts that
every grader gives every student exactly the points its answers earn. Timings on a shared machine are
inflated: the load average before and after is part of the figures.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
WORKERS = 2


def _course_copy(root: Path, assignment: str, students: list[tuple[str, object, float]]):
    """A released course under ``root`` with every student's notebook submitted; returns the Course."""
    from course_utils.grading.course import Course
    from course_utils.grading.release import ensure_released

    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / assignment, root / "solutions" / assignment)
    course = Course.load(root)
    ensure_released(course, assignment)
    (notebook,) = course.notebooks(assignment)
    for student, nb, _ in students:
        folder = course.submitted_dir / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{notebook}.ipynb")
    return course


def _nbgrader_scores(course, assignment: str, students) -> dict[str, float]:
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        return {s: float(gb.find_submission(assignment, s).score) for s, _, _ in students}


def time_nbgrader(course, assignment: str, students) -> tuple[float, dict[str, float]]:
    """Seconds for plain ``nbgrader autograde <assignment>`` (all students, serial) and its scores."""
    import warnings

    from nbgrader.apps import NbGraderAPI
    from sqlalchemy.exc import SAWarning
    with contextlib.chdir(course.root), warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own autoflush noise
        api = NbGraderAPI(coursedir=course.coursedir, config=course.config)
        start = time.perf_counter()
        outcome = api.autograde(assignment, "*", force=True, create=True)
        seconds = time.perf_counter() - start
    if not outcome.get("success"):
        raise RuntimeError(f"nbgrader autograde failed:\n{outcome.get('error') or outcome.get('log')}")
    return seconds, _nbgrader_scores(course, assignment, students)


def time_ours(course, assignment: str, sandboxed: bool) -> tuple[float, dict[str, float], float]:
    """Seconds for our autograde (reference run included), its scores, and the reference run's own seconds."""
    from course_utils.grading.autograde import autograde
    start = time.perf_counter()
    (report,) = autograde(course, [assignment], workers=WORKERS, sandboxed=sandboxed, force=True, progress=False)
    seconds = time.perf_counter() - start
    return seconds, {s: total for s, (total, _) in report.totals.items()}, report.reference_seconds


def _check_scores(expected: dict[str, float], got: dict[str, dict[str, float]]) -> None:
    for grader, scores in got.items():
        wrong = {s: (scores.get(s), points) for s, points in expected.items() if scores.get(s) != points}
        if wrong:
            raise AssertionError(f"{grader} gave scores that differ from what the answers earn "
                                 f"(student: (got, earned)): {wrong}")


def run(n_submissions: int = 20, assignment: str = "01_tensors_vs_numpy") -> dict:
    """Grade ``n_submissions`` honest submissions with all three graders; return the figures (see module doc)."""
    if n_submissions < 1:
        raise ValueError(f"n_submissions must be at least 1, not {n_submissions}.")
    from course_utils.grading.samples import honest_class
    release_nb = nbformat.read(REPO / "exercises" / assignment / f"{assignment}_exercises.ipynb", as_version=4)
    solution_nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}_exercises.ipynb", as_version=4)
    if assignment != "01_tensors_vs_numpy":
        raise ValueError("the honest sample class is built for 01_tensors_vs_numpy only; pass that assignment.")
    students = honest_class(release_nb, solution_nb, n_submissions)
    expected = {s: points for s, _, points in students}
    figures = {"assignment": assignment, "n_submissions": n_submissions, "workers": WORKERS,
               "cpu_count": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        copies = {}
        for name in ("nbgrader", "sandboxed", "no_sandbox"):
            (Path(tmp) / name).mkdir()
            copies[name] = _course_copy(Path(tmp) / name, assignment, students)
        scores = {}
        figures["nbgrader_s"], scores["nbgrader"] = time_nbgrader(copies["nbgrader"], assignment, students)
        figures["sandboxed_s"], scores["sandboxed"], ref = time_ours(copies["sandboxed"], assignment, True)
        figures["reference_run_s"] = round(ref, 2)
        figures["no_sandbox_s"], scores["no_sandbox"], _ = time_ours(copies["no_sandbox"], assignment, False)
        # the same class again: the reference records now come from the cache
        figures["sandboxed_warm_s"], scores["sandboxed_warm"], _ = time_ours(copies["sandboxed"], assignment, True)
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    _check_scores(expected, scores)
    figures["scores_identical"] = True
    n = n_submissions
    for name in ("nbgrader", "sandboxed", "no_sandbox", "sandboxed_warm"):
        figures[f"{name}_s_per_submission"] = round(figures[f"{name}_s"] / n, 3)
    figures["speedup_sandboxed"] = round(figures["nbgrader_s"] / figures["sandboxed_s"], 2)
    figures["speedup_no_sandbox"] = round(figures["nbgrader_s"] / figures["no_sandbox_s"], 2)
    figures["speedup_sandboxed_warm"] = round(figures["nbgrader_s"] / figures["sandboxed_warm_s"], 2)
    figures["sandbox_overhead_s_per_submission"] = round((figures["sandboxed_s"] - figures["no_sandbox_s"]) / n, 3)
    for key in ("nbgrader_s", "sandboxed_s", "no_sandbox_s", "sandboxed_warm_s"):
        figures[key] = round(figures[key], 2)
    # the headline names bench.run reads (sandboxed, reference run included)
    figures.update(pipeline_s=figures["sandboxed_s"], serial_s=figures["nbgrader_s"],
                   speedup=figures["speedup_sandboxed"], identical_scores=figures["scores_identical"],
                   s_per_submission=figures["sandboxed_s_per_submission"],
                   sandbox_overhead_s=figures["sandbox_overhead_s_per_submission"])
    return figures


def format_table(figures: dict) -> str:
    """The figures as a short table for the terminal."""
    rows = [("plain nbgrader autograde (serial)", "nbgrader", None),
            (f"ours, sandboxed, {figures['workers']} workers (cold reference)", "sandboxed", "speedup_sandboxed"),
            (f"ours, --no-sandbox, {figures['workers']} workers (cold reference)", "no_sandbox", "speedup_no_sandbox"),
            (f"ours, sandboxed, {figures['workers']} workers (cached reference)", "sandboxed_warm",
             "speedup_sandboxed_warm")]
    lines = [f"grading throughput: {figures['n_submissions']} submissions of {figures['assignment']}, "
             f"{figures['cpu_count']} CPUs, load average {figures['loadavg_before']} -> {figures['loadavg_after']}",
             f"{'grader':<52}{'total s':>9}{'s/sub':>8}{'speed-up':>10}"]
    for label, name, speedup in rows:
        lines.append(f"{label:<52}{figures[name + '_s']:>9.1f}{figures[name + '_s_per_submission']:>8.2f}"
                     f"{(str(figures[speedup]) + 'x') if speedup else '1x':>10}")
    lines.append(f"sandbox overhead: {figures['sandbox_overhead_s_per_submission']:+.2f} s per submission; "
                 f"scores identical across graders: {figures['scores_identical']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m bench.grading_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--n-submissions", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    figures = run(args.n_submissions)
    print(format_table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
