"""A class at once, two of them hostile (issue 26): twenty honest students and two hostile ones, each a real
account, submit exercise 01 together on a real classroom; the honest students' feedback is not held back by
the hostile two, nothing is lost or graded twice, and a held submission is shown with its time and graded then.

The runs are bracketed: the class without the hostile two, then with them, then without them again; the
hostile run's honest median is compared with the slower of the two runs around it, so that the load other
work puts on a shared machine, which changes from minute to minute, weighs on both sides of the comparison.
Latency is measured as ``make bench`` measures it (``bench.feedback_latency``): from the moment a student's
``nbgrader submit`` returned to the time the grader wrote their submission graded (after its feedback was in
the exchange). The figures are printed; ``make bench`` (section ``latency_hostile``) keeps the benchmark's.
"""

from __future__ import annotations

import hashlib
import os
import re
import statistics
import time

import nbformat
import pytest
from e2e.hub_support import ASSIGNMENT, NOTEBOOK, Hub, running_classroom, wait_until

from bench.feedback_latency import HUGE_SPARSE_BYTES, OVER_SIZE_BYTES, slow_notebook
from course_utils.grading.authoring.samples import honest_class
from support import REPO

pytestmark = pytest.mark.slow

HONEST = int(os.environ.get("HUB_LOAD_STUDENTS", "20"))  # at least 20; what 2 busy CPU cores grade in minutes
MIN_INTERVAL = 20  # the rate limit here (the held submission's test)
BUDGET = 60  # the on-submit wall budget per notebook here (the hub's default is 180 s)
RELEASE = nbformat.read(REPO / "exercises" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
SOLUTION = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
CLASS = honest_class(RELEASE, SOLUTION, HONEST)  # (name, notebook, points)

HUGE = """folder="$1"; notebook="$2"; tmp="$(dirname "$1")/.huge-$$"
mkdir "$tmp" && cp "$notebook" "$tmp/" && printf '2000-01-01 00:00:00.000000 UTC' > "$tmp/timestamp.txt"
printf 'huge-secret' > "$tmp/submission_secret.txt"
truncate -s "$3" "$tmp/sparse.bin"
head -c "$4" /dev/urandom > "$tmp/over_size.bin"
chmod 777 "$tmp" && mv "$tmp" "$folder" """


@pytest.fixture(scope="module")
def hub():
    roles = [f"s{i:02d}" for i in range(1, HONEST + 1)] + ["slow", "huge"]
    with running_classroom(
        roles, "class_load", min_interval=MIN_INTERVAL, course_settings=f"c.Watcher.notebook_timeout = {BUDGET}\n"
    ) as hub:
        for (_, nb, _), role in zip(CLASS, roles):
            hub.write_as(hub.user(role), f"{ASSIGNMENT}/{NOTEBOOK}.ipynb", nbformat.writes(nb))
        hub.write_as(hub.user("slow"), f"{ASSIGNMENT}/{NOTEBOOK}.ipynb", nbformat.writes(slow_notebook(RELEASE)))
        hub.write_as(hub.user("huge"), f"{ASSIGNMENT}/{NOTEBOOK}.ipynb", nbformat.writes(RELEASE))
        yield hub


def _newest(hub: Hub, user: str) -> str:
    return sorted(name for name in hub.inbound_entries() if name.startswith(f"{user}+"))[-1]


def _wait_for_the_rate_limit(hub: Hub, users: list[str]) -> None:
    """Until none of ``users`` would be held by the rate limit (their last grading started long enough ago)."""
    last = max((hub.entry(user).get("started", 0) for user in users), default=0)
    time.sleep(max(0.0, last + MIN_INTERVAL + 1 - time.time()))


def class_run(hub: Hub, hostile: bool) -> dict:
    """Every honest student (and the hostile two, when ``hostile``) submits at once; wait until all are graded.
    Returns honest latencies, and what the grader did."""
    honest = [hub.user(f"s{i:02d}") for i in range(1, HONEST + 1)]
    slow, huge = hub.user("slow"), hub.user("huge")
    _wait_for_the_rate_limit(hub, honest + [slow, huge])
    mark = hub.log.stat().st_size
    load = os.getloadavg()[0]
    processes = {}
    if hostile:  # first, so that they take the grader's workers if anything lets them
        processes[slow] = hub.run_as(
            slow, str(hub.room.venv / "bin" / "nbgrader"), "submit", ASSIGNMENT, background=True
        )
        backdated = hub.inbound / f"{huge}+{ASSIGNMENT}+2000-01-01 00:00:00.000000 UTC+{int(time.time())}"
        processes[huge] = hub.run_as(
            huge,
            "bash",
            "-c",
            HUGE,
            "_",
            str(backdated),
            str(hub.home(huge) / ASSIGNMENT / f"{NOTEBOOK}.ipynb"),
            str(HUGE_SPARSE_BYTES),
            str(OVER_SIZE_BYTES),
            background=True,
        )
    for user in honest:
        processes[user] = hub.run_as(
            user, str(hub.room.venv / "bin" / "nbgrader"), "submit", ASSIGNMENT, background=True
        )
    returned = {}
    while len(returned) < len(processes):
        for user, process in processes.items():
            if user not in returned and process.poll() is not None:
                returned[user] = time.time()
                assert process.returncode == 0, process.stdout.read()
        time.sleep(0.05)
    folders = {user: _newest(hub, user) for user in processes}

    def all_done():
        entries = {user: hub.entry(user) for user in processes}
        return (
            entries
            if all(e.get("entry") == folders[u] and e.get("status") in ("graded", "failed") for u, e in entries.items())
            else None
        )

    entries = wait_until(all_done, 900, "every submission of the run to be graded", every=0.5)
    with open(hub.log, "rb") as handle:
        handle.seek(mark)
        started = re.findall(rf"{ASSIGNMENT}/(\S+): grading", handle.read().decode(errors="replace"))
    latencies = {user: entries[user]["graded"] - returned[user] for user in honest}
    return {
        "latencies": latencies,
        "entries": entries,
        "folders": folders,
        "started": started,
        "load": load,
        "load_after": os.getloadavg()[0],
    }


def _feedback_released(hub: Hub, user: str, folder: str) -> str:
    """The feedback page the grader released for ``user``'s exchange folder ``folder`` (read as root), or ''."""
    secret = (hub.inbound / folder / "submission_secret.txt").read_text()
    name = hashlib.md5((secret + NOTEBOOK).encode()).hexdigest()
    page = hub.room.exchange / hub.room.course_id / "feedback" / f"{name}.html"
    return page.read_text(errors="replace") if page.is_file() else ""


def _check_nothing_lost_or_doubled(hub: Hub, run: dict) -> None:
    for (_, _, points), user in zip(CLASS, [hub.user(f"s{i:02d}") for i in range(1, HONEST + 1)]):
        entry = run["entries"][user]
        assert entry["status"] == "graded" and entry["score"] == points, (user, entry)
        assert run["started"].count(f"{user}") == 1, f"{user} graded {run['started'].count(user)} times"
        assert f"{points:g} / 11" in _feedback_released(hub, user, run["folders"][user]), user


def _summary(latencies) -> dict:
    values = sorted(latencies.values())
    return {"median_s": round(statistics.median(values), 1), "worst_s": round(values[-1], 1)}


def test_the_hostile_two_do_not_hold_back_the_class(hub):
    runs = [
        ("without", class_run(hub, hostile=False)),
        ("with", class_run(hub, hostile=True)),
        ("without", class_run(hub, hostile=False)),
    ]
    for _, run in runs:
        _check_nothing_lost_or_doubled(hub, run)
    hostile = runs[1][1]["entries"]
    slow, huge = hub.user("slow"), hub.user("huge")
    assert hostile[slow]["status"] == "graded" and hostile[huge]["status"] == "graded", hostile
    assert "sparse.bin: over the size limit" in hostile[huge]["message"], hostile[huge]
    assert "over_size.bin: over the size limit" in hostile[huge]["message"], hostile[huge]
    figures = [dict(hostile=kind, load_1min=round(run["load"], 1), **_summary(run["latencies"])) for kind, run in runs]
    print(
        f"\nclass load test: {HONEST} honest students (+2 hostile in the second run), exercise 01, "
        f"{os.cpu_count()} CPU cores; honest submit-to-feedback latency:"
    )
    for figure in figures:
        print(f"  {figure}")
    bound = 2 * max(figures[0]["median_s"], figures[2]["median_s"])
    assert figures[1]["median_s"] <= bound, (
        f"honest median {figures[1]['median_s']} s with the hostile two, "
        f"over 2x the slower run without them ({bound / 2} s)"
    )


def test_a_held_submission_is_shown_with_its_time_to_the_student_and_graded_when_it_comes(hub):
    """ "Rate limit in silence": a resubmission within the rate limit is held; the student's progress page says
    until when; it is graded then, and its feedback released."""
    from e2e.test_hostile_students import progress_rows

    student = hub.user("s01")
    _wait_for_the_rate_limit(hub, [student])
    (_, first_nb, _), (_, second_nb, points) = CLASS[0], CLASS[-1]
    first = hub.submit(student, first_nb)
    second = hub.submit(student, second_nb)
    held = wait_until(
        lambda: (e := hub.entry(student)).get("waiting_for") == second and e, 60, "the resubmission to be held"
    )
    until = time.strftime("%H:%M:%S", time.localtime(held["until"]))
    rows = progress_rows(hub, student)
    assert any("held" in row and until in row for row in rows), (until, rows)
    done = wait_until(
        lambda: (e := hub.entry(student)).get("entry") == second and e.get("status") == "graded" and e,
        MIN_INTERVAL + 300,
        "the held submission to be graded",
    )
    assert done["started"] >= held["until"] and done["score"] == points
    assert f"{points:g} / 11" in _feedback_released(hub, student, second)
    assert first != second
