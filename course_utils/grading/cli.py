"""The instructor's grading tool: ``python -m course_utils.grading {release,collect,autograde,feedback,export}``.

    $ python -m course_utils.grading release
    $ python -m course_utils.grading collect inbox/ --assignment 01_tensors_vs_numpy
    $ python -m course_utils.grading autograde 01_tensors_vs_numpy --workers 4
    $ python -m course_utils.grading feedback
    $ python -m course_utils.grading export
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from course_utils.grading.course import Course, CourseError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grading", description=__doc__.splitlines()[0])
    parser.add_argument("--course", default=".", help="course root holding nbgrader_config.py (default: .)")
    sub = parser.add_subparsers(dest="command", required=True)
    release = sub.add_parser("release", help="regenerate exercises/ from solutions/")
    release.add_argument("assignments", nargs="*")
    collect = sub.add_parser("collect", help="copy submissions into grading/submitted/")
    collect.add_argument("inbox", type=Path, help="folder of <student>/<assignment>/, <student>.ipynb or <student>.zip")
    collect.add_argument("--assignment", help="the assignment single .ipynb/.zip files belong to")
    grade = sub.add_parser("autograde", help="grade submissions in parallel, sandboxed")
    grade.add_argument("assignments", nargs="*")
    grade.add_argument("--student", action="append", help="only this student (repeatable)")
    grade.add_argument("--workers", type=int, default=None, help="parallel kernels (default: CPU count)")
    grade.add_argument("--no-sandbox", action="store_true", help="run kernels unjailed (trusted notebooks only!)")
    grade.add_argument("--force", action="store_true", help="re-grade even unchanged submissions")
    grade.add_argument("--cell-timeout", type=int, help="seconds per cell (default: Execute.timeout)")
    grade.add_argument("--notebook-timeout", type=int, help="seconds per notebook")
    grade.add_argument("--memory-mb", type=int, help="address-space limit of a kernel")
    grade.add_argument("--cpu-seconds", type=int, help="CPU-time limit of a kernel")
    feedback = sub.add_parser("feedback", help="HTML feedback per student, hidden tests removed")
    feedback.add_argument("assignments", nargs="*")
    export = sub.add_parser("export", help="grades CSV and a histogram PNG per task")
    export.add_argument("--out", type=Path, default=None, help="output folder (default: grading/export)")
    return parser


def _limits(course: Course, args) -> None:
    changes = {k: v for k, v in {"cell_timeout": args.cell_timeout, "notebook_timeout": args.notebook_timeout,
                                 "cpu_seconds": args.cpu_seconds,
                                 "memory_bytes": args.memory_mb and args.memory_mb * 2**20}.items() if v}
    course.limits = replace(course.limits, **changes)


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    course = Course.load(args.course)
    if args.command == "release":
        from course_utils.grading.release import release
        print("released:", ", ".join(release(course, args.assignments or None)))
    elif args.command == "collect":
        from course_utils.grading.collect import collect_submissions
        report = collect_submissions(course, args.inbox, args.assignment)
        print(report.summary())
    elif args.command == "autograde":
        from course_utils.grading.autograde import autograde_many
        _limits(course, args)
        if args.no_sandbox:
            print("WARNING: --no-sandbox: student code runs with your permissions.", file=sys.stderr)
        reports = autograde_many(course, args.assignments or course.assignments(), students=args.student,
                                 workers=args.workers, sandboxed=not args.no_sandbox, force=args.force)
        for report in reports:
            print(report.summary())
    elif args.command == "feedback":
        from course_utils.grading.feedback import write_feedback
        for assignment in args.assignments or course.assignments():
            print(f"{assignment}: {len(write_feedback(course, assignment))} feedback file(s)")
    elif args.command == "export":
        from course_utils.grading.export import export_grades
        csv_path, pngs = export_grades(course, args.out or course.workspace / "export")
        print(f"wrote {csv_path} and {len(pngs)} histogram(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from course_utils.grading.sandbox import SandboxUnavailable
    try:
        return run(argv)
    except (CourseError, SandboxUnavailable, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
