"""Grading on submission: watch the nbgrader exchange, grade each new submission, release its feedback.

    $ python -m course_utils.grading.service watch --course /srv/pytorch-foundations/course \\
          --exchange /srv/pytorch-foundations/exchange --min-interval 60

Every ``poll`` seconds the watcher lists the exchange's ``inbound/`` (what nbgrader's submit writes:
``<student>+<assignment>+<timestamp>+<random>/``). For each student and assignment it takes the latest
*complete* submission (nbgrader's submit opens the folder up, ``0777``, as its last step) whose folder
belongs to that student's account, and, once the rate limit allows, grades it with the course's own
pipeline, as the instructor's ``make collect/autograde/feedback`` would:

1. ``collect``: the submission's regular files (never links) into ``submitted/<student>/<assignment>``,
   replacing an earlier one, so a resubmission replaces the earlier grade;
2. ``autograde``: sandboxed, trusted verdicts, gradebook updated (an unchanged submission is not re-run);
3. ``feedback``: the HTML report, released through the exchange (nbgrader's ``release_feedback``), so the
   student's Assignments tab offers *Fetch Feedback*.

The watcher keeps one grading engine (``engine.Engine``: a Dask cluster, each worker holding a kernel
template) for as long as it runs, warmed up when it starts, so a submission of exercise 01 is graded and
its feedback released within seconds instead of paying for a new cluster each time.

What happened is kept in ``<workspace>/service/state.json`` (written atomically) and shown on the progress
page (``course_utils.grading.progress``). Nothing is ever deleted from the exchange, and each step is
idempotent: a watcher killed mid-grading grades the same submission again when it restarts. Re-grade
requests (``regrade``: the progress page, or this module's ``regrade`` command) are files in
``<workspace>/service/requests/``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import pwd
import shutil
import sys
import tempfile
import time
import traceback
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path

from course_utils.atomic import write_atomically
from course_utils.grading.course import Course, is_safe_id
from course_utils.grading.results import load_result, result_totals

#: statuses a (student, assignment) goes through; "graded" and "failed" are final for one submission
QUEUED, WAITING, GRADING, GRADED, FAILED = "queued", "waiting", "grading", "graded", "failed"


@dataclass(frozen=True)
class Submission:
    """One folder of the exchange's inbound/."""
    student: str
    assignment: str
    timestamp: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.assignment}/{self.student}"


@dataclass
class Settings:
    """How the watcher runs (the command line's options)."""
    course: Path
    exchange: Path
    min_interval: float = 60.0      # seconds between two gradings of one student's assignment
    poll: float = 1.0               # seconds between two looks at the exchange
    workers: int | None = None
    sandboxed: bool = True
    check_owner: bool = True        # a submission folder must belong to the account of the student it names
    owner: str | None = None        # the instructor's account: gets the workspace files the watcher writes
    scheduler: str | None = None    # a Dask scheduler's address: grade on other machines (autograde's engine)


# ---------------------------------------------------------------- the exchange


def parse_entry(path: Path) -> Submission | None:
    """The submission an inbound folder name describes, or None when the name is not nbgrader's.

        >>> parse_entry(Path("alice+01_tensors_vs_numpy+2026-01-01 10:00:00.000000 UTC+abc"))
        Submission(student='alice', assignment='01_tensors_vs_numpy', timestamp='2026-01-01 10:00:00.000000 UTC', path=...)
    """
    parts = path.name.rsplit("+", 3)
    if len(parts) != 4 or not is_safe_id(parts[0]) or not is_safe_id(parts[1]):
        return None
    return Submission(parts[0], parts[1], parts[2], path)


def is_complete(path: Path) -> bool:
    """nbgrader's submit wrote ``timestamp.txt`` and then made the folder ``0777``: its last step."""
    try:
        return (path.stat().st_mode & 0o777) == 0o777 and (path / "timestamp.txt").is_file()
    except OSError:
        return False


def owned_by_student(sub: Submission) -> bool:
    """True when the folder belongs to the local account named like the student (nobody else's)."""
    try:
        return sub.path.lstat().st_uid == pwd.getpwnam(sub.student).pw_uid
    except KeyError:
        return False


def latest_submissions(inbound: Path, assignments: set[str], check_owner: bool) -> dict[str, Submission]:
    """assignment/student -> that student's newest complete submission (nbgrader's timestamps sort)."""
    latest: dict[str, Submission] = {}
    for path in sorted(inbound.iterdir()) if inbound.is_dir() else []:
        sub = parse_entry(path)
        if (sub is None or sub.assignment not in assignments or path.is_symlink() or not path.is_dir()
                or not is_complete(path) or (check_owner and not owned_by_student(sub))):
            continue
        if sub.key not in latest or (sub.timestamp, sub.path.name) > (latest[sub.key].timestamp, latest[sub.key].path.name):
            latest[sub.key] = sub
    return latest


# ---------------------------------------------------------------- state


class State:
    """``<workspace>/service/state.json``: one entry per assignment/student, saved after every change."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "state.json"
        self.entries: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def update(self, key: str, **fields) -> dict:
        self.entries.setdefault(key, {}).update(fields, updated=time.time())
        write_atomically(self.path, json.dumps(self.entries, indent=1, sort_keys=True))
        return self.entries[key]


def load_state(course: Course) -> dict[str, dict]:
    """The watcher's entries (what the progress page shows); {} before the first submission."""
    return State(service_dir(course)).entries


def service_dir(course: Course) -> Path:
    return course.workspace / "service"


# ---------------------------------------------------------------- deciding what to grade


def due(sub: Submission, entry: dict, now: float, min_interval: float) -> str:
    """What to do with ``sub`` given its entry: "skip" (already graded), "wait" or "grade".

        >>> due(Submission("a", "x", "t2", Path("p")), {"entry": "p", "status": "graded"}, 0, 60)
        'skip'
    """
    if entry.get("entry") == sub.path.name and entry.get("status") in (GRADED, FAILED):
        return "skip"
    started = entry.get("started", float("-inf"))
    return "grade" if now - started >= min_interval or entry.get("entry") == sub.path.name else "wait"


def regrade_requests(course: Course) -> list[dict]:
    """Pending re-grade requests (and remove their files: the caller acts on them now)."""
    folder = service_dir(course) / "requests"
    requests = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            requests.append(json.loads(path.read_text()))
        except ValueError:
            pass
        path.unlink(missing_ok=True)
    return requests


def request_regrade(course: Course, assignment: str, students: list[str] | None = None) -> Path:
    """Ask the watcher to grade ``assignment`` again (all its graded students by default)."""
    course.check_assignment(assignment)
    body = json.dumps({"assignment": assignment, "students": students or []})
    return write_atomically(service_dir(course) / "requests" / f"{time.time_ns()}.json", body)


# ---------------------------------------------------------------- grading one batch


def stage(subs: list[Submission], inbox: Path) -> None:
    """Copy each submission's regular files (not links, not hidden folders) to ``inbox/<student>/<assignment>``."""
    for sub in subs:
        target = inbox / sub.student / sub.assignment
        target.mkdir(parents=True)
        for path in sub.path.iterdir():
            if path.is_file() and not path.is_symlink():
                shutil.copyfile(path, target / path.name)


def release_feedback(course: Course, exchange: Path, assignment: str, student: str) -> None:
    """Hand the student's feedback HTML to nbgrader's exchange (with the submission's timestamp and secret)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    submitted = course.submitted_dir / student / assignment
    target = course.feedback_dir / student / assignment
    for name in ("timestamp.txt", "submission_secret.txt"):
        if (submitted / name).is_file():
            shutil.copyfile(submitted / name, target / name)
    for page in target.glob("*.html"):   # written 0600; nbgrader's copy keeps the mode, and the student must read
        page.chmod(0o644)                # it (the exchange's feedback folder is 0711: names are secret hashes)
    config = copy.deepcopy(course.config)
    config.Exchange.root = str(exchange)
    with chdir(course.root):
        outcome = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config).release_feedback(assignment, student)
    if not outcome.get("success"):
        raise RuntimeError(f"nbgrader could not release {student}'s feedback on {assignment}: {outcome.get('log')}")


def grade(course: Course, settings: Settings, assignment: str, students: list[str], force: bool = False,
          engine=None) -> None:
    """autograde + feedback + release for ``students`` of one assignment (already collected), on ``engine``
    (the watcher's long-lived one; None: a cluster made for this call, as ``make autograde`` does)."""
    from course_utils.grading.autograde import autograde
    from course_utils.grading.feedback import feedback
    options = {"scheduler": settings.scheduler} if settings.scheduler else {}
    autograde(course, [assignment], students=students, workers=settings.workers, sandboxed=settings.sandboxed,
              force=force, progress=False, engine=engine, **options)
    feedback(course, assignment, students)
    for student in students:
        release_feedback(course, settings.exchange, assignment, student)


def _start_template(sandboxed: bool, limits) -> str:
    """Run on each engine worker: start its kernel template now rather than on its first job."""
    from course_utils.grading.kernel import Template
    Template.shared(sandboxed, limits)
    return "ready"


def warm_up(course: Course, settings: Settings, engine, assignments: list[str] | None = None) -> dict[str, float]:
    """Get ``engine`` ready to grade at once: every worker's kernel template started and the reference records
    of ``assignments`` (default: none) made; what a first submission would otherwise wait for. Returns the
    seconds each part took."""
    import nbformat
    from nbconvert import HTMLExporter

    from course_utils.grading.records import load_record_bytes
    from course_utils.grading.references import cached_reference, reference_job, reference_key, store_reference
    from course_utils.grading.release import ensure_released
    seconds = {}
    started = time.perf_counter()
    if settings.sandboxed:
        engine.check_sandbox()
    engine.client.run(_start_template, settings.sandboxed, course.limits)
    seconds["kernel templates"] = time.perf_counter() - started
    started = time.perf_counter()   # feedback pages render in processes forked from this one: load nbconvert here
    HTMLExporter(template_name="classic").from_notebook_node(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("warm-up"), nbformat.v4.new_code_cell("print(1)")]))
    seconds["feedback renderer"] = time.perf_counter() - started
    for assignment in assignments or []:
        started = time.perf_counter()
        ensure_released(course, assignment)
        key = reference_key(course, assignment)
        jobs = [reference_job(course, assignment, nb, settings.sandboxed) for nb in course.notebooks(assignment)
                if cached_reference(course, assignment, nb, key) is None]
        for _, out in engine.run(jobs):
            records = load_record_bytes(out.records_bytes, course.limits.record_bytes) if out.records_bytes else {}
            store_reference(course, out, records, key)   # refuses a solution that did not run cleanly
        seconds[f"references of {assignment}"] = time.perf_counter() - started
    return seconds


def grade_submissions(course: Course, settings: Settings, state: State, subs: list[Submission], engine=None) -> None:
    """Collect ``subs``, grade them per assignment and record the outcome of each."""
    from course_utils.grading.collect import collect
    for sub in subs:
        state.update(sub.key, entry=sub.path.name, submitted=sub.timestamp, status=GRADING, started=time.time(),
                     message="")
    inbox = Path(tempfile.mkdtemp(prefix="inbox-", dir=service_dir(course)))
    try:
        stage(subs, inbox)
        report = collect(course, inbox)
    finally:
        shutil.rmtree(inbox, ignore_errors=True)
    by_assignment: dict[str, list[Submission]] = {}
    for sub in subs:
        by_assignment.setdefault(sub.assignment, []).append(sub)
    for assignment, group in sorted(by_assignment.items()):
        _grade_group(course, settings, state, assignment, group, report.problems, engine)


def _grade_group(course, settings, state, assignment, group, problems, engine=None) -> None:
    try:
        grade(course, settings, assignment, [s.student for s in group], engine=engine)
    except Exception as error:  # recorded for the instructor; the next submission or a re-grade retries
        traceback.print_exc()
        for sub in group:
            state.update(sub.key, status=FAILED, message=f"grading failed: {error}")
        return
    for sub in group:
        _record_outcome(course, state, sub, [p for p in problems if p.startswith(f"{sub.student}/")])


def _record_outcome(course: Course, state: State, sub: Submission, problems: list[str]) -> None:
    result = load_result(course, sub.assignment, sub.student)
    if result is None:
        state.update(sub.key, status=FAILED, message="; ".join(problems) or "no result was written")
        return
    score, top = result_totals(result)
    state.update(sub.key, status=GRADED, score=score, max_score=top, graded=time.time(), message="; ".join(problems))


# ---------------------------------------------------------------- the loop


def hand_over(course: Course, owner: str | None) -> None:
    """Give the instructor's account the workspace files the watcher (root) wrote, so the formgrader can edit."""
    if not owner:
        return
    account = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(course.workspace):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            if os.lstat(path).st_uid != account.pw_uid:
                os.lchown(path, account.pw_uid, account.pw_gid)


def _apply_requests(course: Course, settings: Settings, state: State, engine=None) -> bool:
    """Act on the re-grade requests; True when there were any."""
    requests = regrade_requests(course)
    for request in requests:
        assignment = request.get("assignment")
        graded = [k.split("/", 1)[1] for k, e in state.entries.items() if k.startswith(f"{assignment}/")]
        students = [s for s in (request.get("students") or graded) if f"{assignment}/{s}" in state.entries]
        if not students:
            continue
        for student in students:
            state.update(f"{assignment}/{student}", status=GRADING, message="re-grading (instructor's request)")
        try:
            grade(course, settings, assignment, students, force=True, engine=engine)
        except Exception as error:
            for student in students:
                state.update(f"{assignment}/{student}", status=FAILED, message=f"re-grade failed: {error}")
            continue
        for student in students:
            sub = Submission(student, assignment, state.entries[f"{assignment}/{student}"].get("submitted", ""),
                             Path(state.entries[f"{assignment}/{student}"].get("entry", "")))
            _record_outcome(course, state, sub, [])
    return bool(requests)


def step(course: Course, settings: Settings, state: State, now: float | None = None, engine=None) -> list[Submission]:
    """One look at the exchange: grade what is due, note what waits; return the submissions graded."""
    now = time.time() if now is None else now
    inbound = Path(settings.exchange) / course.coursedir.course_id / "inbound"
    ready = []
    for key, sub in sorted(latest_submissions(inbound, set(course.assignments()), settings.check_owner).items()):
        entry = state.entries.get(key, {})
        decision = due(sub, entry, now, settings.min_interval)
        if decision == "grade":
            ready.append(sub)
        elif decision == "wait" and entry.get("waiting_for") != sub.path.name:
            until = time.strftime("%H:%M:%S", time.localtime(entry["started"] + settings.min_interval))
            state.update(key, status=WAITING, waiting_for=sub.path.name,
                         message=f"resubmitted too soon: graded at {until} (one grading per {settings.min_interval:g} s)")
    if ready:   # first come, first graded; in batches of one round of the engine's workers, so that the first
        ready.sort(key=lambda sub: (sub.timestamp, sub.key))   # students' feedback need not wait for the last's
        for sub in ready:
            state.update(sub.key, status=QUEUED, message="")
        size = max(1, engine.n_workers if engine is not None else settings.workers or os.cpu_count() or 1)
        for first in range(0, len(ready), size):
            grade_submissions(course, settings, state, ready[first:first + size], engine)
    if _apply_requests(course, settings, state, engine) or ready:
        hand_over(course, settings.owner)
    return ready


def watch(settings: Settings, stop_after: float | None = None, warm: list[str] | None = None) -> None:
    """Grade submissions as they arrive, until interrupted (or ``stop_after`` seconds, for tests), on one
    engine kept for the whole run and warmed up first (``warm``: assignments whose references to make now)."""
    from course_utils.grading.engine import Engine
    course = Course.load(settings.course)
    state = State(service_dir(course))
    for assignment in warm or []:
        course.check_assignment(assignment)
    with Engine(scheduler=settings.scheduler, workers=settings.workers) as engine:
        seconds = warm_up(course, settings, engine, warm)
        print(f"grading engine ready: {engine.n_workers} workers ("
              + ", ".join(f"{part} {s:.1f} s" for part, s in seconds.items()) + ")", flush=True)
        hand_over(course, settings.owner)
        started = time.monotonic()
        print(f"watching {settings.exchange} for {course.coursedir.course_id} submissions", flush=True)
        while stop_after is None or time.monotonic() - started < stop_after:
            began = time.perf_counter()
            for sub in step(course, settings, state, engine=engine):
                entry = state.entries[sub.key]
                print(f"{sub.key}: {entry['status']} {entry.get('score', '')} {entry.get('message', '')} "
                      f"({time.perf_counter() - began:.1f} s)", flush=True)
            time.sleep(settings.poll)


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_utils.grading.service", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("watch", help="grade submissions as they arrive in the exchange")
    run.add_argument("--course", type=Path, required=True, help="the instructor's course root (nbgrader_config.py)")
    run.add_argument("--exchange", type=Path, required=True, help="the nbgrader exchange root")
    run.add_argument("--min-interval", type=float, default=60.0, help="seconds between gradings of one student's assignment")
    run.add_argument("--poll", type=float, default=1.0, help="seconds between looks at the exchange")
    run.add_argument("--workers", type=int, default=None, help="parallel kernels (default: CPU count)")
    run.add_argument("--owner", default=None, help="account that owns the grading workspace (the instructor)")
    run.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a cluster on this machine)")
    run.add_argument("--warm", nargs="*", default=[], metavar="ASSIGNMENT",
                     help="assignments whose reference records to make at start (default: on first submission)")
    run.add_argument("--any-owner", action="store_true", help=argparse.SUPPRESS)   # benchmarks: ids without accounts
    run.add_argument("--stop-after", type=float, default=None, help=argparse.SUPPRESS)
    again = sub.add_parser("regrade", help="ask the watcher to grade an assignment again")
    again.add_argument("--course", type=Path, required=True)
    again.add_argument("assignment")
    again.add_argument("students", nargs="*", help="default: every student graded so far")
    status = sub.add_parser("status", help="print the watcher's progress")
    status.add_argument("--course", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    from course_utils.grading.course import CourseError
    args = _parser().parse_args(argv)
    try:
        if args.command == "watch":
            watch(Settings(args.course, args.exchange, args.min_interval, args.poll, args.workers, owner=args.owner,
                           scheduler=args.scheduler, check_owner=not args.any_owner), args.stop_after, args.warm)
        elif args.command == "regrade":
            print(f"requested: {request_regrade(Course.load(args.course), args.assignment, args.students)}")
        else:
            for key, entry in sorted(load_state(Course.load(args.course)).items()):
                print(f"{key:<48} {entry.get('status', ''):<8} {entry.get('score', '')!s:>5} {entry.get('message', '')}")
    except (CourseError, FileNotFoundError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
