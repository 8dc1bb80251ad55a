"""The course's one command line: ``python -m course_utils.grading <command>`` (``make <command>`` runs the same).

    $ python -m course_utils.grading release                      # the pipeline, in its order
    $ python -m course_utils.grading collect inbox/ --assignment 01_tensors_vs_numpy
    $ python -m course_utils.grading autograde 01_tensors_vs_numpy --workers 4
    $ python -m course_utils.grading feedback
    $ python -m course_utils.grading export
    $ python -m course_utils.grading stats                        # authoring: tasks, points, grading time
    $ python -m course_utils.grading config                       # every setting of nbgrader_config.py
    $ python -m course_utils.grading lab enable                   # the learner's JupyterLab: Validate's summary
    $ python -m course_utils.grading lab update                   # make update
    $ python -m course_utils.grading hub up --roster r.csv --instructor teacher    # make hub
    $ python -m course_utils.grading --course /srv/.../course hub watch --exchange /srv/.../exchange
    $ python -m course_utils.grading cluster certs                # grading past one machine: TLS certificate
    $ python -m course_utils.grading cluster scheduler --host 10.0.0.5
    $ python -m course_utils.grading cluster worker tls://10.0.0.5:8786 --nworkers 4 --host 10.0.0.6

Each command is a ``Command``: a one-line help, a function that adds its options, a function that runs it,
and whether it needs the course (``--course``, default ``.``, before or after the command). Modules are
imported only when their command runs, so ``feedback`` and ``export`` never load torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from course_utils.grading.course import Course, CourseError

DEFAULT_PREFIX = Path("/srv/pytorch-foundations")


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[..., int | None]  # run(course, args), or run(args) without a course; the exit status
    needs_course: bool = True


def _nothing(parser) -> None:
    pass


def _assignments(parser) -> None:
    parser.add_argument("assignments", nargs="*", help="assignment names (default: all)")


# ---------------------------------------------------------------- the pipeline


def _release(course, args) -> None:
    from course_utils.grading.pipeline.release import release

    print("released:", ", ".join(release(course, args.assignments or None)))


def _collect_arguments(parser) -> None:
    parser.add_argument("inbox", type=Path, help="folder of <student>/<assignment>/, <student>.ipynb or <student>.zip")
    parser.add_argument("--assignment", help="the assignment single .ipynb/.zip files belong to")


def _collect(course, args) -> None:
    from course_utils.grading.pipeline.collect import collect

    print(collect(course, args.inbox, args.assignment).summary())


def _engine_arguments(parser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="notebooks graded at once on this machine (default: "
        "c.Grader.workers, else one per core; threads of this process up to 4)",
    )
    parser.add_argument(
        "--scheduler",
        help="grade on this Dask cluster instead, e.g. tls://host:8786 (its workers "
        "run from a copy of the course with its venv)",
    )


def _autograde_arguments(parser) -> None:
    _assignments(parser)
    parser.add_argument("--student", action="append", help="only this student (repeatable)")
    _engine_arguments(parser)
    parser.add_argument("--no-sandbox", action="store_true", help="run kernels unjailed (trusted notebooks only!)")
    parser.add_argument("--force", action="store_true", help="re-grade even unchanged submissions")
    parser.add_argument("--cell-timeout", type=int, help="seconds per cell (default: c.Limits.cell_timeout)")
    parser.add_argument("--notebook-timeout", type=int, help="seconds per notebook")
    parser.add_argument("--memory-mb", type=int, help="memory limit of a kernel, MiB")
    parser.add_argument("--cpu-seconds", type=int, help="CPU-time limit of a kernel")


def _with_limits(course: Course, args) -> None:
    changes = {
        k: v
        for k, v in {
            "cell_timeout": args.cell_timeout,
            "notebook_timeout": args.notebook_timeout,
            "cpu_seconds": args.cpu_seconds,
            "memory_bytes": args.memory_mb and args.memory_mb * 2**20,
        }.items()
        if v
    }
    course.limits = replace(course.limits, **changes)


def engine_settings(course: Course, args) -> dict:
    """workers and scheduler: the command line's, else ``c.Grader``'s."""
    return {
        "workers": args.workers or course.setting("Grader", "workers") or None,
        "scheduler": args.scheduler or course.setting("Grader", "scheduler") or None,
    }


def _certificates(course: Course) -> Path | None:
    folder = course.setting("Grader", "certificates")
    return Path(folder).expanduser() if folder else None


def _autograde(course, args) -> int | None:
    from course_utils.grading.pipeline.autograde import autograde

    _with_limits(course, args)
    if args.no_sandbox:
        print("WARNING: --no-sandbox: student code runs with your permissions.", file=sys.stderr)
    reports = autograde(
        course,
        args.assignments or None,
        students=args.student,
        sandboxed=not args.no_sandbox,
        force=args.force,
        certificates=_certificates(course),
        **engine_settings(course, args),
    )
    for report in reports:
        print(report.summary())
    missed = sum(len(report.not_graded) for report in reports)
    if missed:
        print(
            f"error: {missed} submission(s) could not be graded (see above); their earlier results are kept. "
            "Fix the cause and run autograde again.",
            file=sys.stderr,
        )
        return 1
    return None


def _feedback(course, args) -> None:
    from course_utils.grading.pipeline.feedback import feedback

    for assignment in args.assignments or course.assignments():
        print(f"{assignment}: {len(feedback(course, assignment))} feedback file(s)")


def _export_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: grading/export)")


def _export(course, args) -> None:
    from course_utils.grading.pipeline.export import export

    csv_path, pngs = export(course, args.out)
    print(f"wrote {csv_path} and {len(pngs)} histogram(s)")


def _stats_arguments(parser) -> None:
    _assignments(parser)
    parser.add_argument("--static", action="store_true", help="only count tasks and tests, grade nothing")


def _stats(course, args) -> None:
    from course_utils.grading.authoring.stats import stats

    print(stats(course, args.assignments or None, grade=not args.static))


def _config(course, args) -> None:
    from course_utils.grading.config import describe

    print(describe(course.config))


# ---------------------------------------------------------------- the learner's JupyterLab


def _lab_enable(args) -> None:
    from course_utils.grading.lab.server import enable

    print(f"enabled course_utils.grading.lab.server in {enable()}")


def _lab_update_arguments(parser) -> None:
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the course clone (default: this folder)")


def _lab_update(args) -> None:
    from course_utils.grading.lab.update import update

    for note in update(args.repo):
        print(f"note: {note}")
    print("The course is up to date; your edits and outputs are kept.")


# ---------------------------------------------------------------- grading past one machine


def _folder(parser) -> None:
    parser.add_argument(
        "--certificates",
        type=Path,
        default=None,
        help="folder of the cluster's certificate and key (default: ~/.config/course-grading/cluster)",
    )


def _certs_arguments(parser) -> None:
    _folder(parser)
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="DIR",
        help="also copy them to DIR (private), to carry to the worker machines",
    )


def _certs(args) -> None:
    from course_utils.grading.runner.cluster import DEFAULT_FOLDER, export, make_certificates

    folder = make_certificates(args.certificates or DEFAULT_FOLDER)
    print(f"cluster certificate and key in {folder} (yours only: whoever holds the key can run code on the cluster)")
    if args.export:
        print(
            f"copied to {export(folder, args.export)}: put them in ~/.config/course-grading/cluster on each worker "
            "machine (or pass --certificates), readable by the grading user only"
        )


def _scheduler_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8786)
    _folder(parser)


def _scheduler(args) -> None:
    from course_utils.grading.runner.cluster import run_scheduler

    run_scheduler(args.host, args.port, args.certificates)


def _worker_arguments(parser) -> None:
    parser.add_argument("scheduler", help="the scheduler's address, tls://host:8786")
    parser.add_argument("--nworkers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--nthreads", type=int, default=1, help="notebooks each worker process grades at once")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the workers listen on (this machine's, reachable from the scheduler)",
    )
    parser.add_argument("--name", default=None, help="the workers' name (numbered past one)")
    _folder(parser)


def _worker(args) -> None:
    from course_utils.grading.runner.cluster import run_workers

    run_workers(args.scheduler, args.nworkers, args.nthreads, args.host, args.name, args.certificates)


# ---------------------------------------------------------------- the classroom


def _prefix(parser) -> None:
    parser.add_argument(
        "--prefix", type=Path, default=DEFAULT_PREFIX, help=f"where the classroom lives ({DEFAULT_PREFIX})"
    )


def _hub_up_arguments(parser) -> None:
    parser.add_argument("--roster", type=Path, required=True, help="CSV of student ids (one per line)")
    parser.add_argument("--instructor", required=True, help="the instructor's account name")
    _prefix(parser)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--homes", type=Path, default=Path("/home"), help="where new accounts' homes go")
    parser.add_argument("--min-interval", type=float, default=60.0, help="seconds between gradings per student")
    parser.add_argument("--proxy", default=shutil_which("configurable-http-proxy"), help="configurable-http-proxy")
    parser.add_argument("--omp-threads", type=int, default=0, help="OMP_NUM_THREADS for kernels (0: torch's default)")
    parser.add_argument("--python", default="", help="the Python every account runs (default: the system's)")
    parser.add_argument(
        "--student-memory-mb",
        type=int,
        default=4096,
        help="memory of each student's server and kernels together (a control group each, where the machine has them)",
    )


def shutil_which(name: str) -> str:
    import shutil

    return shutil.which(name) or ""


def _hub_prepare(args, run_hub: bool = False) -> int:
    from course_utils.grading.hub.accounts import RosterError, check_user_name, read_roster
    from course_utils.grading.hub.classroom import Classroom, hub_command, prepare

    if os.geteuid() != 0:
        raise RosterError("make hub creates accounts and runs JupyterHub for them: run it as root.")
    if not args.proxy or not os.access(args.proxy, os.X_OK):
        raise RosterError(
            "configurable-http-proxy not found: run make hub-tools (npm installs it beside the "
            "hub's config, in course_utils/grading/hub/node_modules)."
        )
    room = Classroom(
        args.prefix.resolve(),
        read_roster(args.roster),
        check_user_name(args.instructor, "instructor"),
        port=args.port,
        homes=args.homes,
        min_interval=args.min_interval,
        proxy=args.proxy,
        omp_threads=args.omp_threads,
        python=args.python,
        student_memory_mb=args.student_memory_mb,
    )
    if room.instructor in room.students:
        raise RosterError(f"The instructor {room.instructor!r} is also on the roster: use another account name.")
    prepare(room)
    print(
        f"classroom ready in {room.prefix}; passwords for new accounts: {room.passwords} "
        f"(readable by {room.instructor})"
    )
    if run_hub:
        cmd, env = hub_command(room)
        print(f"JupyterHub on http://{room.ip}:{room.port}/ (Ctrl-C stops it)", flush=True)
        os.execvpe(cmd[0], cmd, env)
    return 0


def _hub_up(args) -> int:
    return _hub_prepare(args, run_hub=True)


def _hub_down_arguments(parser) -> None:
    _prefix(parser)
    parser.add_argument(
        "--remove-accounts",
        action="store_true",
        help="also remove the accounts the classroom created (their homes are kept, given to root)",
    )
    parser.add_argument(
        "--purge-homes",
        action="store_true",
        help="also delete those accounts and their homes (students' work included!)",
    )
    parser.add_argument("--purge", action="store_true", help="also delete the prefix (grades included!)")


def _hub_down(args) -> None:
    from course_utils.grading.hub.classroom import down

    for sentence in down(args.prefix, args.remove_accounts, args.purge_homes, args.purge):
        print(sentence)


def _watch_arguments(parser) -> None:
    parser.add_argument("--exchange", type=Path, required=True, help="the nbgrader exchange root")
    parser.add_argument(
        "--min-interval",
        type=float,
        default=None,
        help="seconds between gradings of one student's assignment (default: c.Watcher.min_interval)",
    )
    parser.add_argument("--poll", type=float, default=None, help="seconds between looks at the exchange")
    _engine_arguments(parser)
    parser.add_argument("--owner", default=None, help="account that owns the grading workspace (the instructor)")
    parser.add_argument(
        "--warm",
        nargs="*",
        default=[],
        metavar="ASSIGNMENT",
        help="assignments whose reference records to make at start (default: on first submission)",
    )
    parser.add_argument("--any-owner", action="store_true", help=argparse.SUPPRESS)  # benchmarks: ids without accounts
    parser.add_argument("--stop-after", type=float, default=None, help=argparse.SUPPRESS)


def _watch(course, args) -> None:
    from course_utils.grading.hub.watcher import Settings, watch

    for assignment in args.warm:
        course.check_assignment(assignment)
    settings = Settings(
        course.root,
        args.exchange,
        args.min_interval if args.min_interval is not None else course.setting("Watcher", "min_interval"),
        args.poll if args.poll is not None else course.setting("Watcher", "poll"),
        owner=args.owner,
        check_owner=not args.any_owner,
        notebook_timeout=course.setting("Watcher", "notebook_timeout"),
        submission_bytes=course.setting("Watcher", "submission_bytes"),
        read_delay=course.setting("Watcher", "read_delay"),
        certificates=_certificates(course),
        **engine_settings(course, args),
    )
    watch(settings, args.stop_after, args.warm)


def _regrade_arguments(parser) -> None:
    parser.add_argument("assignment")
    parser.add_argument("students", nargs="*", help="default: every student graded so far")


def _regrade(course, args) -> None:
    from course_utils.grading.hub.state import request_regrade

    print(f"requested: {request_regrade(course, args.assignment, args.students)}")


def _status(course, args) -> None:
    from course_utils.grading.hub.state import load_state

    for key, entry in sorted(load_state(course).items()):
        print(f"{key:<48} {entry.get('status', ''):<8} {entry.get('score', '')!s:>5} {entry.get('message', '')}")


def _progress_arguments(parser) -> None:
    parser.add_argument(
        "--instructor", required=True, help="the account that sees every student (the others see their own submissions)"
    )


def _progress(course, args) -> None:
    from course_utils.grading.hub.progress import serve

    serve(course, args.instructor)


COMMANDS = {
    "release": Command("regenerate exercises/ from solutions/ with nbgrader", _assignments, _release),
    "collect": Command("copy submissions into grading/submitted/", _collect_arguments, _collect),
    "autograde": Command("grade submissions in parallel, sandboxed", _autograde_arguments, _autograde),
    "feedback": Command("HTML feedback per student, hidden tests removed", _assignments, _feedback),
    "export": Command("grades CSV and a histogram PNG per task", _export_arguments, _export),
    "stats": Command("tasks, points, tests and grading time per exercise", _stats_arguments, _stats),
    "config": Command("every grading setting (c.Limits, c.Grader, c.Watcher) with its value", _nothing, _config),
}
GROUPS = {
    "cluster": (
        "grading past one machine: a Dask cluster over TLS",
        {
            "certs": Command(
                "make the cluster's certificate (once) and say where it is", _certs_arguments, _certs, False
            ),
            "scheduler": Command("run the cluster's scheduler", _scheduler_arguments, _scheduler, False),
            "worker": Command(
                "run grading workers for a scheduler (from the course folder)", _worker_arguments, _worker, False
            ),
        },
    ),
    "lab": (
        "the learner's JupyterLab",
        {
            "enable": Command(
                "turn on Validate's per-task summary in this Python's Jupyter", _nothing, _lab_enable, False
            ),
            "update": Command(
                "pull the course's updates, keeping your edits (make update)", _lab_update_arguments, _lab_update, False
            ),
        },
    ),
    "hub": (
        "a JupyterHub classroom on this machine (as root)",
        {
            "up": Command("build the classroom and run JupyterHub (make hub)", _hub_up_arguments, _hub_up, False),
            "prepare": Command(
                "build the classroom without running JupyterHub", _hub_up_arguments, _hub_prepare, False
            ),
            "down": Command(
                "stop the classroom, remove the accounts it created (make hub-down)",
                _hub_down_arguments,
                _hub_down,
                False,
            ),
            "watch": Command(
                "grade submissions as they arrive in the exchange (the hub's grader service)", _watch_arguments, _watch
            ),
            "regrade": Command("ask the watcher to grade an assignment again", _regrade_arguments, _regrade),
            "status": Command("print the watcher's progress", _nothing, _status),
            "progress": Command("serve the progress page (the hub's progress service)", _progress_arguments, _progress),
        },
    ),
}


def _add(sub, name: str, command: Command) -> None:
    parser = sub.add_parser(name, help=command.help, description=command.help)
    if command.needs_course:  # also accepted after the command; the one before it is the default
        parser.add_argument("--course", default=argparse.SUPPRESS, help="course root holding nbgrader_config.py")
    command.add_arguments(parser)
    parser.set_defaults(command=command)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m course_utils.grading", description=__doc__.splitlines()[0])
    top.add_argument("--course", default=".", help="course root holding nbgrader_config.py (default: .)")
    sub = top.add_subparsers(dest="name", required=True, metavar="command")
    for name, command in COMMANDS.items():
        _add(sub, name, command)
    for group, (help_text, commands) in GROUPS.items():
        inner = sub.add_parser(group, help=help_text, description=help_text).add_subparsers(
            dest="subcommand", required=True, metavar="command"
        )
        for name, command in commands.items():
            _add(inner, name, command)
    return top


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command: Command = args.command
    if command.needs_course:
        return command.run(Course.load(args.course), args) or 0
    return command.run(args) or 0


def main(argv: list[str] | None = None) -> int:
    from course_utils.grading.git import GitError
    from course_utils.grading.hub.accounts import RosterError
    from course_utils.grading.runner.sandbox import SandboxUnavailable

    try:
        return run(argv)
    except KeyboardInterrupt:
        return 130
    except (CourseError, SandboxUnavailable, FileNotFoundError, RosterError, GitError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
