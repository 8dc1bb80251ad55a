"""Grading throughput: the course's pipeline vs plain serial ``nbgrader autograde``, same submissions, same run.

    $ python -m bench.grading_throughput                 # 20 submissions of exercise 01, and the scaling run
    >>> figures = run(n_submissions=20, scaling=200)      # doctest: +SKIP
    >>> figures["speedup_sandboxed"]                      # doctest: +SKIP

Graders, each on its own copy of the course, on the same honest notebooks (correct, partial and wrong
answers from ``course_utils.grading.authoring.samples.honest_class``; no attacks, which fool plain nbgrader by design):

* ``nbgrader``: nbgrader's own ``autograde`` app (through ``NbGraderAPI``) on every student, serially;
* ``sandboxed``: ``course_utils.grading.pipeline.autograde`` on a fresh 2-worker Dask LocalCluster, every kernel
  jailed, *everything* counted: starting the cluster and each worker's kernel template, the solution
  notebook's reference run, grading, the gradebook;
* ``no_sandbox``: the same with ``sandboxed=False`` (the difference is the jail's cost);
* ``warm``: the same class again on an engine that is already running, references cached: the marginal
  cost of a submission, as a hub that grades all day pays it.

Also: the seconds per stage of one submission (means over the warm run's notebooks), and the scaling run:
``scaling`` submissions on a warm engine of 1 worker, then of 2. Worker-seconds per submission are wall
seconds x workers / submissions. Every grader must give every student exactly the points its answers earn.
Timings on a shared machine are inflated: the load average before and after is part of the figures.
"""

from __future__ import annotations

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
ASSIGNMENT = "01_tensors_vs_numpy"


def _course_copy(root: Path, students: list[tuple[str, object, float]]):
    """A released course under ``root`` with every student's notebook submitted; returns the Course."""
    from course_utils.grading.course import Course
    from course_utils.grading.pipeline.release import ensure_released

    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    course = Course.load(root)
    ensure_released(course, ASSIGNMENT)
    (notebook,) = course.notebooks(ASSIGNMENT)
    for student, nb, _ in students:
        folder = course.submitted_dir / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{notebook}.ipynb")
    return course


def time_nbgrader(course, students) -> tuple[float, dict[str, float]]:
    """Seconds for plain ``nbgrader autograde <assignment>`` (all students, serial) and its scores."""
    import warnings

    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from sqlalchemy.exc import SAWarning

    from course_utils.grading.course import working_folder

    with working_folder(course.root), warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own autoflush noise
        api = NbGraderAPI(coursedir=course.coursedir, config=course.config)
        start = time.perf_counter()
        outcome = api.autograde(ASSIGNMENT, "*", force=True, create=True)
        seconds = time.perf_counter() - start
    if not outcome.get("success"):
        raise RuntimeError(f"nbgrader autograde failed:\n{outcome.get('error') or outcome.get('log')}")
    with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
        return seconds, {s: float(gb.find_submission(ASSIGNMENT, s).score) for s, _, _ in students}


def time_ours(course, sandboxed: bool, engine=None, workers: int = WORKERS):
    """(seconds, scores, report) of our autograde: on ``engine`` if given, else on a fresh LocalCluster."""
    from course_utils.grading.pipeline.autograde import autograde

    start = time.perf_counter()
    (report,) = autograde(
        course, [ASSIGNMENT], workers=workers, sandboxed=sandboxed, force=True, progress=False, engine=engine
    )
    seconds = time.perf_counter() - start
    return seconds, {s: total for s, (total, _) in report.totals.items()}, report


def _check_scores(expected: dict[str, float], got: dict[str, dict[str, float]]) -> None:
    for grader, scores in got.items():
        wrong = {s: (scores.get(s), points) for s, points in expected.items() if scores.get(s) != points}
        if wrong:
            raise AssertionError(
                f"{grader} gave scores that differ from what the answers earn (student: (got, earned)): {wrong}"
            )


def stage_means(report) -> dict[str, float]:
    """Mean seconds (and CPU seconds, peak bytes) per stage over a report's notebooks."""
    keys = sorted(
        {
            k
            for stages in report.stages
            for k, v in stages.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    return {k: round(sum(s.get(k) or 0 for s in report.stages) / max(1, len(report.stages)), 4) for k in keys}


def _class(n: int):
    from course_utils.grading.authoring.samples import honest_class

    release_nb = nbformat.read(REPO / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}_exercises.ipynb", as_version=4)
    solution_nb = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}_exercises.ipynb", as_version=4)
    return honest_class(release_nb, solution_nb, n)


def scaling(n: int, tmp: Path) -> dict:
    """``n`` submissions on a warm sandboxed engine of 1 worker, then of 2: seconds and worker-seconds each."""
    from course_utils.grading.runner.engine import Engine

    students = _class(n)
    expected = {s: points for s, _, points in students}
    figures = {"n": n}
    for workers in (1, 2):
        root = tmp / f"scale{workers}"
        root.mkdir()
        course = _course_copy(root, students)
        with Engine(workers=workers) as engine:
            time_ours(course, True, engine=engine)  # starts the templates and caches the references
            seconds, scores, _ = time_ours(course, True, engine=engine)
        _check_scores(expected, {f"{workers} worker(s)": scores})
        figures[f"workers_{workers}_s"] = round(seconds, 2)
        figures[f"workers_{workers}_worker_s_per_submission"] = round(seconds * workers / n, 3)
    figures["speedup_2_vs_1"] = round(figures["workers_1_s"] / figures["workers_2_s"], 2)
    return figures


def run(n_submissions: int = 20, scaling_n: int = 0) -> dict:
    """Grade ``n_submissions`` honest submissions with every grader; return the figures (see module doc)."""
    from course_utils.grading.runner.engine import Engine

    if n_submissions < 1:
        raise ValueError(f"n_submissions must be at least 1, not {n_submissions}.")
    students = _class(n_submissions)
    expected = {s: points for s, _, points in students}
    figures = {
        "assignment": ASSIGNMENT,
        "n_submissions": n_submissions,
        "workers": WORKERS,
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        copies = {}
        for name in ("nbgrader", "sandboxed", "no_sandbox"):
            (Path(tmp) / name).mkdir()
            copies[name] = _course_copy(Path(tmp) / name, students)
        scores = {}
        figures["nbgrader_s"], scores["nbgrader"] = time_nbgrader(copies["nbgrader"], students)
        figures["sandboxed_s"], scores["sandboxed"], cold = time_ours(copies["sandboxed"], True)
        figures["reference_run_s"] = round(cold.reference_seconds, 2)
        figures["no_sandbox_s"], scores["no_sandbox"], _ = time_ours(copies["no_sandbox"], False)
        with Engine(workers=WORKERS) as engine:
            time_ours(copies["sandboxed"], True, engine=engine)  # the engine's templates start here
            figures["warm_s"], scores["warm"], warm = time_ours(copies["sandboxed"], True, engine=engine)
        figures["stages"] = stage_means(warm)
        _check_scores(expected, scores)
        if scaling_n:
            figures["scaling"] = scaling(scaling_n, Path(tmp))
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    figures["scores_identical"] = True
    n = n_submissions
    for name in ("nbgrader", "sandboxed", "no_sandbox", "warm"):
        figures[f"{name}_s_per_submission"] = round(figures[f"{name}_s"] / n, 3)
        workers = 1 if name == "nbgrader" else WORKERS
        figures[f"{name}_worker_s_per_submission"] = round(figures[f"{name}_s"] * workers / n, 3)
    for name in ("sandboxed", "no_sandbox", "warm"):
        figures[f"speedup_{name}"] = round(figures["nbgrader_s"] / figures[f"{name}_s"], 2)
    figures["sandbox_cost_s_per_submission"] = round((figures["sandboxed_s"] - figures["no_sandbox_s"]) / n, 3)
    for key in ("nbgrader_s", "sandboxed_s", "no_sandbox_s", "warm_s"):
        figures[key] = round(figures[key], 2)
    figures.update(speedup=figures["speedup_sandboxed"], identical_scores=figures["scores_identical"])
    return figures


def format_table(figures: dict) -> str:
    """The figures as a short table for the terminal."""
    rows = [
        ("plain nbgrader autograde (serial)", "nbgrader", None),
        (f"ours, sandboxed, {figures['workers']} workers, everything counted", "sandboxed", "speedup_sandboxed"),
        (f"ours, --no-sandbox, {figures['workers']} workers, everything counted", "no_sandbox", "speedup_no_sandbox"),
        ("ours, sandboxed, warm engine, cached references", "warm", "speedup_warm"),
    ]
    lines = [
        f"grading throughput: {figures['n_submissions']} submissions of {figures['assignment']}, "
        f"{figures['cpu_count']} CPUs, load average {figures['loadavg_before']} -> {figures['loadavg_after']}",
        f"{'grader':<56}{'total s':>9}{'s/sub':>8}{'worker-s/sub':>14}{'speed-up':>10}",
    ]
    for label, name, speedup in rows:
        lines.append(
            f"{label:<56}{figures[name + '_s']:>9.1f}{figures[name + '_s_per_submission']:>8.2f}"
            f"{figures[name + '_worker_s_per_submission']:>14.2f}"
            f"{(str(figures[speedup]) + 'x') if speedup else '1x':>10}"
        )
    lines.append("stages of one submission (warm, means): " + json.dumps(figures["stages"]))
    if "scaling" in figures:
        s = figures["scaling"]
        lines.append(
            f"{s['n']} submissions, warm: 1 worker {s['workers_1_s']:.1f} s, 2 workers {s['workers_2_s']:.1f} s "
            f"({s['speedup_2_vs_1']}x); worker-s per submission {s['workers_1_worker_s_per_submission']} / "
            f"{s['workers_2_worker_s_per_submission']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.grading_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--n-submissions", type=int, default=20)
    parser.add_argument("--scaling", type=int, default=200, help="submissions for the 1 vs 2 workers run (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    figures = run(args.n_submissions, args.scaling)
    print(format_table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
