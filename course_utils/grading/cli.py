"""The instructor's grading tool: ``python -m course_utils.grading <command>`` (``make <command>`` runs the same).

    $ python -m course_utils.grading release
    $ python -m course_utils.grading collect inbox/ --assignment 01_tensors_vs_numpy
    $ python -m course_utils.grading autograde 01_tensors_vs_numpy --workers 4
    $ python -m course_utils.grading feedback
    $ python -m course_utils.grading export
    $ python -m course_utils.grading stats

Each command is a row of ``COMMANDS``: a one-line help, a function that adds its options, and a function
that runs it. Every command has a module of the same name in ``course_utils/grading/`` whose function of
the same name does the work (``feedback.feedback(course, ...)``); modules are imported only when their
command runs, so ``feedback`` and ``export`` never load torch.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from course_utils.grading.course import Course, CourseError


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Course, argparse.Namespace], int | None]   # the exit status (None: 0)


def _assignments(parser) -> None:
    parser.add_argument("assignments", nargs="*", help="assignment names (default: all)")


def _release(course, args) -> None:
    from course_utils.grading.release import release
    print("released:", ", ".join(release(course, args.assignments or None)))


def _collect_arguments(parser) -> None:
    parser.add_argument("inbox", type=Path, help="folder of <student>/<assignment>/, <student>.ipynb or <student>.zip")
    parser.add_argument("--assignment", help="the assignment single .ipynb/.zip files belong to")


def _collect(course, args) -> None:
    from course_utils.grading.collect import collect
    print(collect(course, args.inbox, args.assignment).summary())


def _autograde_arguments(parser) -> None:
    _assignments(parser)
    parser.add_argument("--student", action="append", help="only this student (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="workers of the local Dask cluster, each grading one "
                        "notebook at a time (default: CPU count; threads of this process up to 4)")
    parser.add_argument("--scheduler", help="grade on this Dask cluster instead, e.g. tcp://host:8786 (its workers "
                        "run from a copy of the course with its venv)")
    parser.add_argument("--no-sandbox", action="store_true", help="run kernels unjailed (trusted notebooks only!)")
    parser.add_argument("--force", action="store_true", help="re-grade even unchanged submissions")
    parser.add_argument("--cell-timeout", type=int, help="seconds per cell (default: Execute.timeout)")
    parser.add_argument("--notebook-timeout", type=int, help="seconds per notebook")
    parser.add_argument("--memory-mb", type=int, help="address-space limit of a kernel")
    parser.add_argument("--cpu-seconds", type=int, help="CPU-time limit of a kernel")


def _with_limits(course: Course, args) -> None:
    changes = {k: v for k, v in {"cell_timeout": args.cell_timeout, "notebook_timeout": args.notebook_timeout,
                                 "cpu_seconds": args.cpu_seconds,
                                 "memory_bytes": args.memory_mb and args.memory_mb * 2**20}.items() if v}
    course.limits = replace(course.limits, **changes)


def _autograde(course, args) -> None:
    from course_utils.grading.autograde import autograde
    _with_limits(course, args)
    if args.no_sandbox:
        print("WARNING: --no-sandbox: student code runs with your permissions.", file=sys.stderr)
    reports = autograde(course, args.assignments or None, students=args.student, workers=args.workers,
                        sandboxed=not args.no_sandbox, force=args.force, scheduler=args.scheduler)
    for report in reports:
        print(report.summary())
    missed = sum(len(report.not_graded) for report in reports)
    if missed:
        print(f"error: {missed} submission(s) could not be graded (see above); their earlier results are kept. "
              "Fix the cause and run autograde again.", file=sys.stderr)
        return 1
    return None


def _feedback(course, args) -> None:
    from course_utils.grading.feedback import feedback
    for assignment in args.assignments or course.assignments():
        print(f"{assignment}: {len(feedback(course, assignment))} feedback file(s)")


def _export_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: grading/export)")


def _export(course, args) -> None:
    from course_utils.grading.export import export
    csv_path, pngs = export(course, args.out)
    print(f"wrote {csv_path} and {len(pngs)} histogram(s)")


def _stats_arguments(parser) -> None:
    _assignments(parser)
    parser.add_argument("--static", action="store_true", help="only count tasks and tests, grade nothing")


def _stats(course, args) -> None:
    from course_utils.grading.stats import stats
    print(stats(course, args.assignments or None, grade=not args.static))


COMMANDS = {
    "release": Command("regenerate exercises/ from solutions/ with nbgrader", _assignments, _release),
    "collect": Command("copy submissions into grading/submitted/", _collect_arguments, _collect),
    "autograde": Command("grade submissions in parallel, sandboxed", _autograde_arguments, _autograde),
    "feedback": Command("HTML feedback per student, hidden tests removed", _assignments, _feedback),
    "export": Command("grades CSV and a histogram PNG per task", _export_arguments, _export),
    "stats": Command("tasks, points, tests and grading time per exercise", _stats_arguments, _stats),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grading", description=__doc__.splitlines()[0])
    parser.add_argument("--course", default=".", help="course root holding nbgrader_config.py (default: .)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return COMMANDS[args.command].run(Course.load(args.course), args) or 0


def main(argv: list[str] | None = None) -> int:
    from course_utils.grading.sandbox import SandboxUnavailable
    try:
        return run(argv)
    except (CourseError, SandboxUnavailable, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
