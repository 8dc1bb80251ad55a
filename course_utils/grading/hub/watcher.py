"""Grading on submission: watch the nbgrader exchange, grade each new submission, release its feedback.

    $ python -m course_utils.grading --course /srv/pytorch-foundations/course hub watch \\
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

What happened is kept by ``hub.state`` and shown on the progress page (``hub.progress``). Nothing is ever
deleted from the exchange (``hub.exchange`` reads it), and each step is idempotent: a watcher killed
mid-grading grades the same submission again when it restarts. Re-grade requests come from the progress
page or ``python -m course_utils.grading hub regrade``.
"""
from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from course_utils.grading.course import Course
from course_utils.grading.hub.exchange import Submission, latest_submissions, release_feedback, stage
from course_utils.grading.hub.state import (
    FAILED,
    GRADED,
    GRADING,
    QUEUED,
    WAITING,
    State,
    regrade_requests,
    service_dir,
)
from course_utils.grading.pipeline.autograde import autograde
from course_utils.grading.pipeline.collect import collect
from course_utils.grading.pipeline.feedback import feedback
from course_utils.grading.pipeline.results import load_result, result_totals
from course_utils.grading.runner.engine import Engine


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


# ---------------------------------------------------------------- grading one batch


def grade(course: Course, settings: Settings, assignment: str, students: list[str], force: bool = False,
          engine=None) -> None:
    """autograde + feedback + release for ``students`` of one assignment (already collected), on ``engine``
    (the watcher's long-lived one; None: a cluster made for this call, as ``make autograde`` does)."""
    options = {"scheduler": settings.scheduler} if settings.scheduler else {}
    autograde(course, [assignment], students=students, workers=settings.workers, sandboxed=settings.sandboxed,
              force=force, progress=False, engine=engine, **options)
    feedback(course, assignment, students)
    for student in students:
        release_feedback(course, settings.exchange, assignment, student)


def warm_up(course: Course, settings: Settings, engine, assignments: list[str] | None = None) -> dict[str, float]:
    """Get ``engine`` ready to grade at once: every worker's kernel template started and the reference records
    of ``assignments`` (default: none) made; what a first submission would otherwise wait for. Returns the
    seconds each part took."""
    import nbformat
    from nbconvert import HTMLExporter

    from course_utils.grading.pipeline.references import make_references
    seconds = {}
    started = time.perf_counter()
    if settings.sandboxed:
        engine.check_sandbox()
    engine.start_templates(settings.sandboxed, course.limits)
    seconds["kernel templates"] = time.perf_counter() - started
    started = time.perf_counter()   # feedback pages render in processes forked from this one: load nbconvert here
    HTMLExporter(template_name="classic").from_notebook_node(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("warm-up"), nbformat.v4.new_code_cell("print(1)")]))
    seconds["feedback renderer"] = time.perf_counter() - started
    for assignment in assignments or []:
        started = time.perf_counter()
        make_references(course, assignment, engine, settings.sandboxed)
        seconds[f"references of {assignment}"] = time.perf_counter() - started
    return seconds


def grade_submissions(course: Course, settings: Settings, state: State, subs: list[Submission], engine=None) -> None:
    """Collect ``subs``, grade them per assignment and record the outcome of each."""
    for sub in subs:
        state.update(sub.key, entry=sub.path.name, submitted=sub.timestamp, status=GRADING, started=time.time(),
                     message="")
    inbox = Path(tempfile.mkdtemp(prefix="inbox-", dir=service_dir(course)))
    try:
        refused = stage(subs, inbox, course.limits.disk_bytes)
        report = collect(course, inbox)
        report.problems += [f"{why}: not copied" for why in refused]
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
