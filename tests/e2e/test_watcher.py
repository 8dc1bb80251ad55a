"""Grading on submission through the real nbgrader exchange: the watcher's steps on one long-lived engine
(sandboxed), as the hub's grader service runs them. Submissions are made with nbgrader's own
``ExchangeSubmit`` and feedback fetched with its ``ExchangeFetchFeedback``; the students are ids, not local
accounts, so the watcher's account check is off (the browser test of the hub runs it with real accounts).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest

from course_utils.grading.authoring.samples import POINTS, honest_class
from course_utils.grading.hub import state as states
from course_utils.grading.hub import watcher as service
from course_utils.grading.pipeline.results import load_result
from support import REPO

TOTAL = sum(POINTS.values())  # exercise 01's points

ASSIGNMENT = "01_tensors_vs_numpy"
NOTEBOOK = f"{ASSIGNMENT}_exercises"
COURSE_ID = "pytorch-foundations"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)"),
]


def exchange_app(kind: str, home: Path, exchange: Path, student: str):
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.fetch_feedback import ExchangeFetchFeedback
    from nbgrader.exchange.default.submit import ExchangeSubmit
    from traitlets.config import Config

    c = Config()
    c.CourseDirectory.course_id, c.CourseDirectory.assignment_id = COURSE_ID, ASSIGNMENT
    c.CourseDirectory.student_id, c.CourseDirectory.root = student, str(home)
    c.Exchange.root, c.Exchange.assignment_dir, c.Exchange.cache = str(exchange), str(home), str(home / ".cache")
    app = {"submit": ExchangeSubmit, "fetch_feedback": ExchangeFetchFeedback}[kind]
    return app(coursedir=CourseDirectory(config=c), authenticator=Authenticator(config=c), config=c)


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """(course, settings, state, engine, submit(student, notebook) -> None, fetch(student) -> feedback HTML)."""
    from course_utils.grading.course import Course
    from course_utils.grading.pipeline.workspace import ensure_workspace
    from course_utils.grading.runner.engine import Engine

    root = tmp_path_factory.mktemp("service")
    course_root, exchange, homes = root / "course", root / "exchange", root / "homes"
    course_root.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", course_root)
    for folder in ("solutions", "exercises"):
        shutil.copytree(REPO / folder / ASSIGNMENT, course_root / folder / ASSIGNMENT)
    ensure_workspace(course_root, exchange)
    course = Course.load(course_root)
    settings = service.Settings(
        course_root, exchange, min_interval=60, check_owner=False, workers=2, notebook_timeout=45
    )

    def submit(student: str, nb) -> None:
        folder = homes / student / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{NOTEBOOK}.ipynb")
        exchange_app("submit", homes / student, exchange, student).start()

    def fetch(student: str) -> str:
        exchange_app("fetch_feedback", homes / student, exchange, student).start()
        pages = sorted((homes / student / ASSIGNMENT / "feedback").rglob(f"{NOTEBOOK}.html"))
        return pages[-1].read_text() if pages else ""

    with Engine(workers=2) as engine:
        service.warm_up(course, settings, engine)
        watcher = service.Watcher(course, settings, engine)
        yield watcher, submit, fetch
        watcher.close()


def keys(tasks) -> list[str]:
    return [task.key for task in tasks]


def test_a_submission_is_graded_and_its_feedback_fetched_a_resubmission_waits_then_replaces_it(classroom):
    watcher, submit, fetch = classroom
    state, settings = watcher.state, watcher.settings
    release = nbformat.read(REPO / "exercises" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    solution = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    sample = {points: nb for _, nb, points in honest_class(release, solution, 20)}
    low, high = min(sample), max(sample)
    key = f"{ASSIGNMENT}/alice"

    submit("alice", sample[low])
    assert keys(watcher.step()) == [key]
    assert state.entries[key]["status"] == states.GRADING
    watcher.drain()
    assert state.entries[key]["status"] == states.GRADED and state.entries[key]["score"] == low
    assert f"{low:g} / {TOTAL:g}" in fetch("alice")

    time.sleep(1.1)  # nbgrader's submission timestamps have microseconds, but keep them clearly apart
    submit("alice", sample[high])
    assert watcher.step() == []  # within min_interval: it is held, and the student is told until when
    entry = state.entries[key]
    assert entry["status"] == states.WAITING and "is graded at" in entry["message"]
    assert entry["until"] == entry["started"] + settings.min_interval
    assert keys(watcher.step(now=entry["until"] + 1)) == [key]  # its time has come: graded, nothing to do
    watcher.drain()
    assert state.entries[key]["status"] == states.GRADED and state.entries[key]["score"] == high
    assert "until" not in state.entries[key]
    assert f"{high:g} / {TOTAL:g}" in fetch("alice")


def test_the_instructor_can_ask_for_a_regrade(classroom):
    watcher, submit, fetch = classroom
    state = watcher.state
    key = f"{ASSIGNMENT}/alice"
    before = dict(state.entries[key])
    path = states.request_regrade(watcher.course, ASSIGNMENT)
    assert keys(watcher.step()) == [key]  # no new submission, but the request
    assert not path.exists()
    watcher.drain()
    entry = state.entries[key]
    assert entry["status"] == states.GRADED and entry["score"] == before["score"]
    assert entry["graded"] > before["graded"]


def test_one_students_slow_notebooks_never_hold_back_anothers_feedback(classroom):
    """Two workers: Eve's notebook sleeps far past the on-submit budget (45 s here); Bob's and Carol's honest
    submissions are graded while hers runs, and hers is stopped at the budget, with a note."""
    watcher, submit, fetch = classroom
    state = watcher.state
    release = nbformat.read(REPO / "exercises" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    solution = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    honest = next(nb for _, nb, points in honest_class(release, solution, 20) if points == TOTAL)
    slow = nbformat.from_dict(dict(honest))  # her answers, and then a cell that would sleep for a quarter hour
    slow.cells = [*honest.cells, nbformat.v4.new_code_cell("import time\ntime.sleep(1000)")]
    submit("eve", slow)
    assert keys(watcher.step()) == [f"{ASSIGNMENT}/eve"]
    submit("bob", honest)
    submit("carol", honest)
    assert keys(watcher.step()) == [f"{ASSIGNMENT}/bob"]  # the one free worker
    assert state.entries[f"{ASSIGNMENT}/carol"]["status"] == states.QUEUED
    while state.entries[f"{ASSIGNMENT}/bob"]["status"] == states.GRADING:
        time.sleep(0.2)
    assert state.entries[f"{ASSIGNMENT}/eve"]["status"] == states.GRADING  # Bob did not wait for Eve
    assert keys(watcher.step()) == [f"{ASSIGNMENT}/carol"]
    watcher.drain()
    assert state.entries[f"{ASSIGNMENT}/bob"]["score"] == state.entries[f"{ASSIGNMENT}/carol"]["score"] == TOTAL
    assert f"{TOTAL:g} / {TOTAL:g}" in fetch("bob")
    eve = load_result(watcher.course, ASSIGNMENT, "eve")["notebooks"][NOTEBOOK]
    assert any("notebook wall-time limit (45 s)" in hit for hit in eve["limits_hit"]), eve["limits_hit"]


def _listening(processes) -> set:
    """The (ip, port) pairs these processes listen on (those that ended meanwhile skipped)."""
    import psutil

    found = set()
    for process in processes:
        try:
            found |= {c.laddr for c in process.net_connections() if c.status == "LISTEN"}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def cluster_of_watch(monkeypatch, settings, attack: bool = False) -> dict:
    """Run the hub's grader service (``watch``) as far as its engine, in place of its warm-up: the cluster it
    made (scheduler, workers, the sockets it opened in this process and the processes it started, Dask pages
    served) and, with ``attack``, what a real unprivileged local user's ``Client`` got from it. Sockets and
    processes of earlier tests in this session are left out: only what ``watch`` opened counts."""
    import psutil
    from kernel.test_cluster import attack_as_student, http_answers

    me = psutil.Process()
    before_children = {p.pid for p in me.children(recursive=True)}
    before = _listening([me])
    seen: dict = {}

    def look(course, settings, engine, assignments=None):
        info = engine.client.scheduler_info()
        seen.update(scheduler=info["address"], workers=list(info["workers"]), n_workers=engine.n_workers)
        started = [p for p in me.children(recursive=True) if p.pid not in before_children]
        seen["listening"] = (_listening([me]) - before) | _listening(started)
        seen["http"] = http_answers(seen["listening"])
        if attack:
            tcp = seen["scheduler"].replace("tls://", "tcp://")
            seen["tried"] = attack_as_student([seen["scheduler"], tcp, seen["workers"][0]], [])
        return {}

    monkeypatch.setattr(service, "warm_up", look)
    service.watch(settings, stop_after=0)
    return seen


def test_the_hub_service_with_no_workers_option_on_a_big_machine_runs_a_tls_cluster_on_loopback(tmp_path, monkeypatch):
    # before issue 25: the hub's grader service passes no --workers, so past 4 cores its cluster had worker
    # processes on TCP without TLS (a student's Client ran code as root) and dashboards on 0.0.0.0
    from support import make_tiny_course

    course = make_tiny_course(tmp_path / "course")
    monkeypatch.setattr("os.cpu_count", lambda: 8)  # what the service's engine sizes itself by
    seen = cluster_of_watch(monkeypatch, service.Settings(course.root, tmp_path / "exchange"), attack=True)
    assert seen["n_workers"] == 8 and not any(w.startswith("inproc://") for w in seen["workers"]), seen
    assert seen["scheduler"].startswith("tls://127.0.0.1:"), seen
    assert all(w.startswith("tls://127.0.0.1:") for w in seen["workers"]), seen
    assert seen["listening"] and all(laddr.ip == "127.0.0.1" for laddr in seen["listening"]), seen
    assert seen["http"] == {}, "a member of the hub's cluster serves Dask's pages"
    assert "ran code" not in seen["tried"].values(), seen["tried"]


def test_the_hub_service_joins_the_courses_tls_cluster_with_the_configured_certificates(tmp_path, monkeypatch):
    # c.Grader.scheduler with c.Grader.certificates: the watcher's engine looked in the default folder instead
    from kernel.test_cluster import free_port, start

    from course_utils.grading.runner import cluster as cluster_module
    from support import make_tiny_course

    certificates = cluster_module.make_certificates(tmp_path / "certs")
    course = make_tiny_course(tmp_path / "course")
    address = f"tls://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    scheduler = start("scheduler", "--port", port, "--certificates", str(certificates), log=tmp_path / "s.log")
    worker = None
    try:
        deadline = time.monotonic() + 120
        while "scheduler at" not in (tmp_path / "s.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = start("worker", address, "--certificates", str(certificates), log=tmp_path / "w.log")
        settings = service.Settings(course.root, tmp_path / "exchange", scheduler=address, certificates=certificates)
        seen = cluster_of_watch(monkeypatch, settings)
    finally:
        for process in (scheduler, worker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert seen["scheduler"] == address and seen["n_workers"] == 1, seen
    assert all(w.startswith("tls://127.0.0.1:") for w in seen["workers"]), seen
    with pytest.raises(cluster_module.CertificateError, match="TLS only"):
        service.watch(replace(settings, scheduler=address.replace("tls://", "tcp://")), stop_after=0)
