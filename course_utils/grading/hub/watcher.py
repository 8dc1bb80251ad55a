"""Grading on submission: watch the nbgrader exchange, grade each new submission, release its feedback.

    $ python -m course_utils.grading --course /srv/pytorch-foundations/course hub watch \\
          --exchange /srv/pytorch-foundations/exchange --min-interval 60

Every ``poll`` seconds the watcher looks at the exchange's ``inbound/`` (``hub.exchange``): folders that name one
student but belong to another account go to the quarantine; of each student's own, the newest complete
submission of each assignment is taken, once the rate limit allows (one grading per ``min_interval`` seconds;
a submission held back is graded when its time comes). Each is graded as the instructor's ``make
collect/autograde/feedback`` would, in a thread of its own:

1. its regular files are read once, from the student's own folder, into a folder of the grader's
   (``exchange.stage``), then ``collect``\\ ed into ``submitted/<student>/<assignment>``, replacing an
   earlier one, so a resubmission replaces the earlier grade;
2. ``autograde``: sandboxed, trusted verdicts, within the on-submit budget per notebook
   (``c.Watcher.notebook_timeout``), gradebook updated;
3. ``feedback``: the HTML report, released through the exchange, so the student's Assignments tab offers
   *Fetch Feedback*.

The loop never waits for a grading: it starts at most one per worker of its engine (one Dask cluster, its
kernel template warmed up at start) and goes on looking. Each student has at most one submission grading at
a time, and when more are due than there are workers, students with fewer gradings in the last hour go first:
no one's submissions can keep another student's feedback waiting for longer than one bounded grading.

What happened is kept by ``hub.state`` (queued, grading, graded, held until a time, failed, quarantined) and
shown on the progress page (``hub.progress``): the instructor sees everyone, each student their own. Nothing
is deleted from the exchange but forged folders, and each step is idempotent: a watcher killed mid-grading
grades the same submission again when it restarts.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pwd
import shutil
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from course_utils.grading.course import Course
from course_utils.grading.hub.exchange import (
    SUBMISSION_BYTES,
    Submission,
    SubmissionRefused,
    latest_submissions,
    parse_entry,
    quarantine,
    release_feedback,
    stage,
)
from course_utils.grading.hub.state import (
    FAILED,
    GRADED,
    GRADING,
    QUARANTINED,
    QUEUED,
    WAITING,
    State,
    regrade_requests,
    service_dir,
)
from course_utils.grading.pipeline.autograde import autograde
from course_utils.grading.pipeline.collect import collect
from course_utils.grading.pipeline.feedback import feedback
from course_utils.grading.pipeline.references import make_references
from course_utils.grading.pipeline.release import ensure_released
from course_utils.grading.pipeline.results import load_result, result_totals
from course_utils.grading.runner.engine import Engine

#: how far back "recent" gradings count when deciding who goes first
RECENT_SECONDS = 3600


@dataclass
class Settings:
    """How the watcher runs (``c.Watcher`` in nbgrader_config.py, and the command line's options)."""

    course: Path
    exchange: Path
    min_interval: float = 60.0  # seconds between two gradings of one student's assignment
    poll: float = 1.0  # seconds between two looks at the exchange
    workers: int | None = None
    sandboxed: bool = True
    check_owner: bool = True  # a submission folder must belong to the account of the student it names
    owner: str | None = None  # the instructor's account: gets the workspace files the watcher writes
    scheduler: str | None = None  # a Dask scheduler's address: grade on other machines (autograde's engine)
    certificates: Path | None = None  # the scheduler's TLS certificate folder (c.Grader.certificates), as autograde's
    notebook_timeout: int = 180  # wall seconds per notebook when grading on submission
    submission_bytes: int = SUBMISSION_BYTES
    read_delay: float = 0.0  # tests only: seconds between choosing a folder and reading it


def due(sub: Submission, entry: dict, now: float, min_interval: float) -> str:
    """What to do with ``sub`` given its entry: "skip" (its grading ended already), "wait" or "grade" (new and
    allowed by the rate limit, or started and never finished: the watcher was stopped meanwhile).

        >>> due(Submission("a", "x", "t2", Path("p")), {"entry": "p", "status": "graded"}, 0, 60)
        'skip'

    A grading that ended is told by ``finished`` (the status may show a newer submission's, held or queued), and
    a folder older than the last one started is never graded: so when a student's newer folder leaves the
    exchange, for a moment (swapped for a link) or for good, the older one is not graded again.
    """
    name, last = sub.path.name, entry.get("entry")
    if entry.get("finished") == name or (last == name and entry.get("status") in (GRADED, FAILED)):
        return "skip"
    newest = parse_entry(Path(last)) if last and last != name else None
    if newest is not None and (sub.timestamp, name) < (newest.timestamp, last):
        return "skip"
    started = entry.get("started", float("-inf"))
    return "grade" if now - started >= min_interval or entry.get("entry") == name else "wait"


def settled(entry: dict, folder: str | None, status: str, message: str) -> dict:
    """The status and note to record when the grading of the exchange folder ``folder`` (None: a re-grade) ends:
    its own, unless a newer submission of the student's waits (held by the rate limit, or queued behind this
    one): then the page goes on saying where that one is (its score columns are this one's until it is graded).

        >>> settled({"waiting_for": "t2"}, "t1", "graded", ""), settled({}, "t1", "graded", "")
        ({}, {'status': 'graded', 'message': ''})
    """
    newer = entry.get("waiting_for")
    return {} if newer and newer != folder else {"status": status, "message": message}


def arrival(sub: Submission, default: float) -> float:
    """When ``sub``'s folder arrived: its inode's change time, which its owner can move later (a rename, a chmod)
    but never earlier, unlike the timestamp in its name."""
    try:
        return sub.path.lstat().st_ctime
    except OSError:
        return default


def hand_over(course: Course, owner: str | None, top: Path | None = None) -> None:
    """Give the instructor's account the workspace files the watcher (root) wrote below ``top`` (default: the
    whole workspace), so that the formgrader and the instructor's ``nbgrader collect`` can change them.
    The quarantine's folder is handed over, not what is in it: those are the forgers' own files (a hard link
    among them would make root change the owner of the file it links to), and their number is theirs to choose."""
    if not owner:
        return
    account = pwd.getpwnam(owner)
    service = str(service_dir(course))
    top = Path(top or course.workspace)
    if top.is_dir() and not top.is_symlink() and top.lstat().st_uid != account.pw_uid:
        os.lchown(top, account.pw_uid, account.pw_gid)
    for root, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):  # a state file's temporary copy, renamed meanwhile
                if os.lstat(path).st_uid != account.pw_uid:
                    os.lchown(path, account.pw_uid, account.pw_gid)
        if root == service:
            dirs[:] = [d for d in dirs if d != "quarantine"]


def warm_up(course: Course, settings: Settings, engine, assignments: list[str] | None = None) -> dict[str, float]:
    """Get ``engine`` ready to grade at once: every worker's kernel template started and the reference records
    of ``assignments`` (default: none) made; what a first submission would otherwise wait for. Returns the
    seconds each part took."""
    import nbformat
    from nbconvert import HTMLExporter

    seconds = {}
    started = time.perf_counter()
    if settings.sandboxed:
        engine.check_sandbox()
    engine.start_templates(settings.sandboxed, course.limits)
    seconds["kernel templates"] = time.perf_counter() - started
    started = time.perf_counter()  # feedback pages render in processes forked from this one: load nbconvert here
    HTMLExporter(template_name="classic").from_notebook_node(
        nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_markdown_cell("warm-up"), nbformat.v4.new_code_cell("print(1)")]
        )
    )
    seconds["feedback renderer"] = time.perf_counter() - started
    for assignment in assignments or []:
        started = time.perf_counter()
        make_references(course, assignment, engine, settings.sandboxed)
        seconds[f"references of {assignment}"] = time.perf_counter() - started
    return seconds


@dataclass(frozen=True)
class Task:
    """One grading to do: a new submission (``sub``), or a re-grade of what a student already submitted."""

    key: str  # assignment/student
    student: str
    assignment: str
    submitted: str  # the submission's timestamp, as its folder's name says
    sub: Submission | None = None  # None: a re-grade of the collected submission
    arrived: float = 0.0  # when its folder was last changed (the student can only make it later):
    # first come, first graded among equals, whatever the name claims


class Watcher:
    """The grader service: one engine, one grading per engine worker at a time, one per student."""

    def __init__(self, course: Course, settings: Settings, engine=None):
        self.course, self.settings, self.engine = course, settings, engine
        course.limits = replace(
            course.limits,
            notebook_timeout=min(course.limits.notebook_timeout, settings.notebook_timeout),
            cell_timeout=min(course.limits.cell_timeout, settings.notebook_timeout),
        )
        self.state = State(service_dir(course))
        self.slots = max(1, engine.n_workers if engine is not None else settings.workers or os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(self.slots, thread_name_prefix="grading")
        self.running: dict[str, Future] = {}  # student -> their grading in progress
        self.history: dict[str, list[float]] = collections.defaultdict(list)  # student -> recent starts
        self.regrades: dict[str, Task] = {}  # key -> a re-grade the instructor asked for
        self.lock = threading.RLock()  # the course's shared files: release, gradebook, feedback, exchange
        self.assignment_locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)

    # ------------------------------------------------------------ one look
    def step(self, now: float | None = None) -> list[Task]:
        """One look at the exchange: start what is due (within the free slots), note what waits; never blocks
        on a grading. Returns the tasks started."""
        now = time.time() if now is None else now
        self._reap()
        inbound = Path(self.settings.exchange) / self.course.coursedir.course_id / "inbound"
        assignments = set(self.course.assignments())
        if self.settings.check_owner:
            for name in quarantine(inbound, assignments, service_dir(self.course) / "quarantine"):
                self.state.update(
                    f"quarantine/{name}",
                    status=QUARANTINED,
                    student=name.split("+")[0],
                    message="this folder names a student but belongs to another account: moved "
                    "out of the exchange, never graded",
                )
        due_tasks = []
        for key, sub in sorted(latest_submissions(inbound, assignments, self.settings.check_owner).items()):
            entry = self.state.entries.get(key, {})
            decision = due(sub, entry, now, self.settings.min_interval)
            if decision == "grade":
                due_tasks.append(Task(key, sub.student, sub.assignment, sub.timestamp, sub, arrival(sub, now)))
            elif decision == "wait" and entry.get("waiting_for") != sub.path.name:
                until = entry["started"] + self.settings.min_interval
                self.state.update(
                    key,
                    status=WAITING,
                    waiting_for=sub.path.name,
                    until=until,
                    message=f"held: one grading per {self.settings.min_interval:g} s; this submission "
                    f"is graded at {time.strftime('%H:%M:%S', time.localtime(until))}",
                )
        for request in regrade_requests(self.course):
            self._queue_regrades(request)
        due_tasks += [t for t in self.regrades.values() if t.key not in {d.key for d in due_tasks}]
        return self._dispatch(due_tasks, now)

    def _queue_regrades(self, request: dict) -> None:
        assignment = request.get("assignment")
        graded = [k.split("/", 1)[1] for k in self.state.entries if k.startswith(f"{assignment}/")]
        for student in request.get("students") or graded:
            key = f"{assignment}/{student}"
            if key in self.state.entries:
                self.regrades[key] = Task(
                    key, student, assignment, self.state.entries[key].get("submitted", ""), arrived=time.time()
                )
                self.state.update(key, status=QUEUED, message="re-grade (the instructor's request)")

    def _recent(self, student: str, now: float) -> int:
        self.history[student] = [t for t in self.history[student] if now - t < RECENT_SECONDS]
        return len(self.history[student])

    def _dispatch(self, tasks: list[Task], now: float) -> list[Task]:
        """Start the due tasks while slots are free: students with fewer recent gradings first, then first come."""
        tasks.sort(key=lambda t: (self._recent(t.student, now), t.arrived, t.key))
        started, waiting = [], 0
        for task in tasks:
            entry = self.state.entries.get(task.key, {})
            if task.sub is not None and entry.get("finished") == task.sub.path.name:
                continue  # its grading ended between the look at the exchange and now: nothing is due
            if (
                task.student in self.running
                and entry.get("status") == GRADING
                and (task.sub is None or entry.get("entry") == task.sub.path.name)
            ):
                continue  # this very submission is grading now
            if task.student in self.running or len(self.running) >= self.slots:
                waiting += 1
                why = (
                    "waits for your other submission to finish grading"
                    if task.student in self.running
                    else f"queued: {waiting} submission(s) ahead of it or grading"
                )
                if self.state.entries.get(task.key, {}).get("message") != why:
                    self.state.update(
                        task.key,
                        status=QUEUED,
                        message=why,
                        waiting_for=task.sub.path.name if task.sub is not None else None,
                    )
                continue
            self._start(task, now)
            started.append(task)
        return started

    def _start(self, task: Task, now: float) -> None:
        fields = dict(status=GRADING, started=now, message="", waiting_for=None, until=None)
        if task.sub is not None:
            fields.update(entry=task.sub.path.name, submitted=task.submitted)
        self.state.update(task.key, **fields)
        self.history[task.student].append(now)
        self.regrades.pop(task.key, None)
        self.running[task.student] = self.pool.submit(self._grade, task)

    def _reap(self) -> None:
        for student, future in list(self.running.items()):
            if future.done():
                del self.running[student]

    # ------------------------------------------------------------ one grading (in a thread of its own)
    def _grade(self, task: Task) -> None:
        """One grading, start to end: whatever happens, the workspace is handed over and the grading recorded as
        ended (graded or failed), so that it is never started again in a loop."""
        problems: list[str] = []
        ending = None
        try:
            problems = self._grade_steps(task)
        except SubmissionRefused as error:
            ending = {"status": FAILED, "message": f"not graded: {error}"}
        except Exception as error:  # recorded for the instructor; the next submission or a re-grade retries
            traceback.print_exc()
            ending = {"status": FAILED, "message": f"grading failed: {error}"}
        try:  # nothing the watcher wrote stays root's, whatever happened (the instructor's Collect removes it)
            with self.lock:
                hand_over(self.course, self.settings.owner)
        except OSError:
            traceback.print_exc()
        try:
            if ending is None:
                self._record_outcome(task, problems)
        except Exception as error:  # noqa: BLE001 - a result that cannot be read is a failed grading, not a loop
            traceback.print_exc()
            ending = {"status": FAILED, "message": f"grading failed: {error}"}
        if ending is not None:
            self._settle(task, **ending)

    def _grade_steps(self, task: Task) -> list[str]:
        """Collect (a new submission), autograde, render and release the feedback; the problems to note."""
        problems: list[str] = []
        if task.sub is not None:
            problems = self._collect(task.sub)
        self._references(task.assignment)
        autograde(
            self.course,
            [task.assignment],
            students=[task.student],
            sandboxed=self.settings.sandboxed,
            force=task.sub is None,
            progress=False,
            engine=self.engine,
            lock=self.lock,
        )
        with self.lock:
            feedback(self.course, task.assignment, [task.student])
            release_feedback(self.course, self.settings.exchange, task.assignment, task.student)
        return problems

    def _collect(self, sub: Submission) -> list[str]:
        """The submission, read once from the student's folder into the grader's, then collected."""
        if self.settings.read_delay:
            time.sleep(self.settings.read_delay)
        inbox = Path(tempfile.mkdtemp(prefix="inbox-", dir=service_dir(self.course)))
        try:
            refused = stage(
                sub, inbox / sub.student / sub.assignment, self.settings.submission_bytes, self.settings.check_owner
            )
            with self.lock:
                report = collect(self.course, inbox)
                hand_over(self.course, self.settings.owner, self.course.submitted_dir)
        finally:
            shutil.rmtree(inbox, ignore_errors=True)
        return [p for p in report.problems if p.startswith(f"{sub.student}/")] + [f"{r}: not copied" for r in refused]

    def _references(self, assignment: str) -> None:
        """The assignment's reference records, made once (by the first of its submissions to need them)."""
        with self.lock:
            ensure_released(self.course, assignment)
        with self.assignment_locks[assignment]:
            make_references(self.course, assignment, self.engine, self.settings.sandboxed)

    def _record_outcome(self, task: Task, problems: list[str]) -> None:
        result = load_result(self.course, task.assignment, task.student)
        if result is None:
            self._settle(task, status=FAILED, message="; ".join(problems) or "no result was written")
            return
        score, top = result_totals(result)
        self._settle(task, status=GRADED, message="; ".join(problems), score=score, max_score=top, graded=time.time())

    def _settle(self, task: Task, status: str, message: str, **fields) -> None:
        """Record how ``task`` ended (see ``settled``)."""
        entry, folder = self.state.entries.get(task.key, {}), task.sub.path.name if task.sub else None
        self.state.update(
            task.key, **fields, **settled(entry, folder, status, message), **({"finished": folder} if folder else {})
        )

    def drain(self) -> None:
        """Wait for every grading in progress (tests, and a watcher that stops)."""
        for future in list(self.running.values()):
            future.result()
        self._reap()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def watch(settings: Settings, stop_after: float | None = None, warm: list[str] | None = None) -> None:
    """Grade submissions as they arrive, until interrupted (or ``stop_after`` seconds, for tests), on one
    engine kept for the whole run and warmed up first (``warm``: assignments whose references to make now)."""
    course = Course.load(settings.course)
    for assignment in warm or []:
        course.check_assignment(assignment)
    with Engine(scheduler=settings.scheduler, workers=settings.workers, certificates=settings.certificates) as engine:
        seconds = warm_up(course, settings, engine, warm)
        print(
            f"grading engine ready: {engine.n_workers} workers ("
            + ", ".join(f"{part} {s:.1f} s" for part, s in seconds.items())
            + ")",
            flush=True,
        )
        hand_over(course, settings.owner)
        watcher = Watcher(course, settings, engine)
        started = time.monotonic()
        print(f"watching {settings.exchange} for {course.coursedir.course_id} submissions", flush=True)
        try:
            while stop_after is None or time.monotonic() - started < stop_after:
                for task in watcher.step():
                    print(f"{task.key}: grading {task.sub.path.name if task.sub else '(re-grade)'}", flush=True)
                time.sleep(settings.poll)
        finally:
            watcher.close()
