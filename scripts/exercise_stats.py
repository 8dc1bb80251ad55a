"""Measure the graded exercises: per notebook tasks, points, visible and hidden tests, and grading time.

    python scripts/exercise_stats.py            # static counts + nbgrader autograde of solution and release
    python scripts/exercise_stats.py --static   # counts only (instant)

Grading uses nbgrader's own API (``NbGraderAPI.autograde``) in a throwaway course directory, with the
solution notebook and the untouched release submitted as two students, so the repository's grading/
workspace is left alone. It prints a Markdown table; the time column is the wall time of autograding the
solution notebook (execution included), and the score columns are nbgrader's gradebook scores
(in-kernel outcome) next to the trusted verdicts of course_utils.checks.compare_records.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_exercises import ROOT, _put_venv_on_path, assignments, course_config  # noqa: E402

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
VISIBLE_TEST = re.compile(r"\bcheck_\w+\(|raise CheckFailure\(")


def static_counts(assignment: str) -> dict:
    """Tasks, points, visible checks and hidden records of one solution notebook."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}_exercises.ipynb", as_version=4)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    visible = sum(len(VISIBLE_TEST.findall(HIDDEN.sub("", c.source))) for c in graded)
    hidden = sum(len(re.findall(r"\brecord\(", m)) for c in graded for m in HIDDEN.findall(c.source))
    points = sum(c.metadata["nbgrader"]["points"] for c in graded)
    return {"tasks": len(graded), "points": points, "visible": visible, "hidden": hidden}


def autograde_times(names: list[str]) -> dict:
    """nbgrader autograde of the solution and of the untouched release, in a temporary course."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI

    from course_utils.checks import compare_records, load_records

    _put_venv_on_path()
    course = Path(tempfile.mkdtemp(prefix="exercise-stats-"))
    results = {}
    try:
        config = course_config()
        config.CourseDirectory.root = str(course)
        config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
        config.CourseDirectory.source_directory = str(ROOT / "solutions")
        api = NbGraderAPI(config=config)
        for name in names:
            notebook = f"{name}_exercises.ipynb"
            for student, folder in (("solution", "solutions"), ("release", "exercises")):
                target = course / "grading" / "submitted" / student / name
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / folder / name / notebook, target / notebook)
            api.generate_assignment(name, force=True, create=True)
            row = {}
            for student in ("solution", "release"):
                os.environ["COURSE_RECORD_FILE"] = str(course / f"{student}-{name}.pt")
                start = time.perf_counter()
                outcome = api.autograde(name, student, force=True, create=True)
                row[f"{student}_seconds"] = time.perf_counter() - start
                if not outcome["success"]:
                    raise RuntimeError(f"autograde {name}/{student} failed:\n{outcome['log']}")
            os.environ.pop("COURSE_RECORD_FILE", None)
            reference = load_records(course / f"solution-{name}.pt")
            with Gradebook(config.CourseDirectory.db_url) as gradebook:
                for student in ("solution", "release"):
                    submission = gradebook.find_submission(name, student)
                    row[f"{student}_nbgrader"] = f"{submission.score:g}/{submission.max_score:g}"
                    path = course / f"{student}-{name}.pt"
                    verdicts = compare_records(load_records(path) if path.exists() else {}, reference)
                    row[f"{student}_trusted"] = f"{sum(v.passed for v in verdicts.values())}/{len(verdicts)}"
            results[name] = row
    finally:
        shutil.rmtree(course, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", action="store_true", help="only count, do not grade")
    parser.add_argument("assignments", nargs="*")
    args = parser.parse_args(argv)
    names = args.assignments or assignments()
    timing = {} if args.static else autograde_times(names)
    header = "| notebook | tasks | points | visible tests | hidden tests |"
    if timing:
        header += (" grading time, solution (s) | release (s) | nbgrader score solution / release"
                   " | trusted tasks passed solution / release |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    totals = {"tasks": 0, "points": 0, "visible": 0, "hidden": 0}
    for name in names:
        counts = static_counts(name)
        totals = {k: totals[k] + counts[k] for k in totals}
        line = f"| {name} | {counts['tasks']} | {counts['points']} | {counts['visible']} | {counts['hidden']} |"
        if timing:
            row = timing[name]
            line += (f" {row['solution_seconds']:.1f} | {row['release_seconds']:.1f} | {row['solution_nbgrader']} / "
                     f"{row['release_nbgrader']} | {row['solution_trusted']} / {row['release_trusted']} |")
        print(line)
    total = f"| **total** | {totals['tasks']} | {totals['points']} | {totals['visible']} | {totals['hidden']} |"
    if timing:
        total += f" {sum(r['solution_seconds'] for r in timing.values()):.1f} | " \
                 f"{sum(r['release_seconds'] for r in timing.values()):.1f} | | |"
    print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
