"""Grading on submission: which exchange folders the watcher grades, and when (no grading runs here)."""

import os
import time
from pathlib import Path

import pytest

from course_utils.grading.hub.exchange import (
    Submission,
    SubmissionRefused,
    is_complete,
    latest_submissions,
    parse_entry,
    quarantine,
    release_feedback,
    stage,
    submission_time,
)
from course_utils.grading.hub.state import GRADED, GRADING, WAITING
from course_utils.grading.hub.watcher import Settings, Task, Watcher, due

A = "01_tensors_vs_numpy"


def submit(inbound: Path, student: str, stamp: str, complete: bool = True) -> Path:
    """A folder as nbgrader's submit leaves it (0777 and timestamp.txt once complete)."""
    folder = inbound / f"{student}+{A}+{stamp}+r{len(list(inbound.iterdir()))}"
    folder.mkdir(parents=True)
    (folder / "nb.ipynb").write_text("{}")
    if complete:
        (folder / "timestamp.txt").write_text(stamp)
        os.chmod(folder, 0o777)
    return folder


def test_an_inbound_folder_name_gives_student_assignment_and_timestamp():
    sub = parse_entry(Path(f"alice+{A}+2026-01-01 10:00:00.000000 UTC+xyz"))
    assert (sub.student, sub.assignment, sub.timestamp) == ("alice", A, "2026-01-01 10:00:00.000000 UTC")
    assert parse_entry(Path("not-a-submission")) is None
    assert parse_entry(Path(f".hidden+{A}+t+r")) is None


def test_only_the_newest_complete_submission_of_each_student_is_taken(tmp_path):
    inbound = tmp_path / "inbound"
    inbound.mkdir()
    submit(inbound, "alice", "2026-01-01 10:00:00 UTC")
    newest = submit(inbound, "alice", "2026-01-01 11:00:00 UTC")
    submit(inbound, "alice", "2026-01-01 12:00:00 UTC", complete=False)  # still being copied
    bob = submit(inbound, "bob", "2026-01-01 09:00:00 UTC")
    found = latest_submissions(inbound, {A}, check_owner=False)
    assert {k: s.path for k, s in found.items()} == {f"{A}/alice": newest, f"{A}/bob": bob}


def test_a_folder_is_complete_only_once_submit_has_opened_it_up(tmp_path):
    inbound = tmp_path / "inbound"
    inbound.mkdir()
    assert is_complete(submit(inbound, "alice", "t1"))
    assert not is_complete(submit(inbound, "alice", "t2", complete=False))


def test_a_submission_naming_another_students_account_is_ignored(tmp_path):
    inbound = tmp_path / "inbound"
    inbound.mkdir()
    submit(inbound, "nobody-with-this-account", "t1")
    assert latest_submissions(inbound, {A}, check_owner=True) == {}


def test_a_graded_submission_is_not_graded_again_and_an_interrupted_one_is():
    sub = Submission("alice", A, "t", Path("alice+x+t+r"))
    assert due(sub, {"entry": sub.path.name, "status": GRADED}, time.time(), 60) == "skip"
    assert due(sub, {"entry": sub.path.name, "status": GRADING, "started": time.time()}, time.time(), 60) == "grade"


def test_a_resubmission_within_the_rate_limit_waits_then_is_graded():
    new = Submission("alice", A, "t2", Path("alice+x+t2+r"))
    entry = {"entry": "alice+x+t1+r", "status": GRADED, "started": 1000.0}
    assert due(new, entry, 1030.0, 60) == "wait"
    assert due(new, entry, 1061.0, 60) == "grade"
    assert due(new, {}, 0.0, 60) == "grade"


# ---------------------------------------------------------------- reading a submission once, as its student's

STUDENT = "nobody"  # a system account stands in for a student: its uid owns "their" files


def owned_submission(inbound: Path, stamp: str = "2026-01-01 10:00:00 UTC") -> Path:
    inbound.mkdir(exist_ok=True)
    folder = submit(inbound, STUDENT, stamp)
    for path in [folder, *folder.iterdir()]:
        os.chown(path, 65534, 65534)
    return folder


@pytest.mark.skipif(os.geteuid() != 0, reason="files of another account need root")
def test_a_submission_is_copied_once_from_the_students_own_files(tmp_path):
    folder = owned_submission(tmp_path / "inbound")
    (folder / "shadow").symlink_to("/etc/shadow")
    (folder / "roots.txt").write_text("not the student's")  # root's file in the student's folder
    sub = parse_entry(folder)
    refused = stage(sub, tmp_path / "copy", check_owner=True)
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["nb.ipynb", "timestamp.txt"]
    assert sorted(refused) == [f"{STUDENT}/{A}/roots.txt: owned by another account", f"{STUDENT}/{A}/shadow: a link"]


@pytest.mark.skipif(os.geteuid() != 0, reason="files of another account need root")
def test_a_folder_swapped_for_a_link_after_it_was_listed_is_refused(tmp_path):
    folder = owned_submission(tmp_path / "inbound")
    sub = parse_entry(folder)
    secret = tmp_path / "solutions"
    secret.mkdir()
    (secret / "answer.ipynb").write_text("the solution")
    folder.rename(tmp_path / "moved")
    folder.symlink_to(secret, target_is_directory=True)
    with pytest.raises(SubmissionRefused, match="changed while it was being read"):
        stage(sub, tmp_path / "copy", check_owner=True)
    assert not (tmp_path / "copy" / "answer.ipynb").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="files of another account need root")
def test_a_folder_that_names_another_student_is_quarantined(tmp_path):
    inbound = tmp_path / "inbound"
    own = owned_submission(inbound)
    forged = submit(inbound, STUDENT, "2026-01-01 11:00:00 UTC")  # root's folder, in nobody's name
    moved = quarantine(inbound, {A}, tmp_path / "quarantine")
    assert moved == [forged.name] and not forged.exists() and own.exists()
    assert (tmp_path / "quarantine" / forged.name / "nb.ipynb").is_file()
    assert latest_submissions(inbound, {A}, check_owner=True)[f"{A}/{STUDENT}"].path == own


def test_feedback_is_never_filed_under_an_earlier_submissions_secret(tiny_course, tmp_path):
    submitted = tiny_course.submitted_dir / "alice" / "hw"
    submitted.mkdir(parents=True)
    feedback = tiny_course.feedback_dir / "alice" / "hw"
    feedback.mkdir(parents=True)
    (feedback / "timestamp.txt").write_text("an earlier submission's")
    (feedback / "submission_secret.txt").write_text("an earlier secret")
    with pytest.raises(SubmissionRefused, match="no timestamp.txt or submission_secret.txt"):
        release_feedback(tiny_course, tmp_path / "exchange", "hw", "alice")
    assert not (feedback / "timestamp.txt").exists() and not (feedback / "submission_secret.txt").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="files of another account need root")
def test_a_forgery_is_quarantined_before_submit_has_finished_and_so_is_a_link(tmp_path):
    """nbgrader's Collect takes folders that submit has not opened up yet (its last step): so a forgery is moved
    out whatever its mode; a link in a student's name is moved as a link, never followed."""
    inbound = tmp_path / "inbound"
    own = owned_submission(inbound)
    unfinished = submit(inbound, STUDENT, "2026-01-01 11:00:00 UTC", complete=False)  # root's, 0755
    link = inbound / f"{STUDENT}+{A}+2026-01-01 12:00:00 UTC+link"
    link.symlink_to(own, target_is_directory=True)
    moved = quarantine(inbound, {A}, tmp_path / "quarantine")
    assert sorted(moved) == sorted([unfinished.name, link.name]) and own.is_dir()
    assert (tmp_path / "quarantine" / link.name).is_symlink()
    assert quarantine(inbound, {A}, tmp_path / "quarantine") == []


def test_a_timestamp_that_cannot_be_read_is_told_apart():
    assert submission_time("2026-01-01 10:00:00.000001 UTC").microsecond == 1
    assert submission_time("not-a-date") is None and submission_time("") is None


def test_a_name_whose_timestamp_cannot_be_read_is_never_taken_for_the_newest(tmp_path):
    inbound = tmp_path / "inbound"
    inbound.mkdir()
    real = submit(inbound, "alice", "2026-01-01 10:00:00.000000 UTC")
    submit(inbound, "alice", "not a time")  # would sort after every real timestamp
    assert latest_submissions(inbound, {A}, check_owner=False)[f"{A}/alice"].path == real


def test_students_with_as_many_recent_gradings_go_in_the_order_they_arrived_whatever_their_names_claim(tiny_course):
    watcher = Watcher(tiny_course, Settings(tiny_course.root, tiny_course.root / "exchange", workers=1))
    started = []
    watcher._start = lambda task, now: started.append(task.student)
    early = Task(f"{A}/bob", "bob", A, "2026-01-01 10:00:00 UTC", arrived=100.0)
    backdated = Task(f"{A}/eve", "eve", A, "1970-01-01 00:00:00 UTC", arrived=200.0)
    watcher._dispatch([backdated, early], now=300.0)
    assert started == ["bob", "eve"]  # (the stand-in starts nothing: the order is the point)
    watcher.pool.shutdown()


@pytest.mark.skipif(os.geteuid() != 0, reason="files of another account need root")
def test_the_instructor_is_handed_the_workspace_but_never_a_forgers_files(tiny_course):
    from course_utils.grading.hub.state import service_dir
    from course_utils.grading.hub.watcher import hand_over

    forged = service_dir(tiny_course) / "quarantine" / f"bob+{A}+t+r"
    forged.mkdir(parents=True)
    (forged / "nb.ipynb").write_text("{}")
    tiny_course.submitted_dir.mkdir(parents=True)
    hand_over(tiny_course, "nobody")
    assert tiny_course.submitted_dir.stat().st_uid == 65534 and forged.parent.stat().st_uid == 65534
    assert forged.stat().st_uid == 0 and (forged / "nb.ipynb").stat().st_uid == 0  # the forger's, untouched


def test_an_older_submission_is_not_graded_again_when_the_newer_one_held_leaves_the_exchange():
    """Alice's newer folder is held by the rate limit (her entry says so); she swaps it for a link: the older one
    is the newest the watcher sees again, and it was graded already."""
    older = Submission("alice", A, "t1", Path("alice+x+t1+r"))
    held = {
        "entry": older.path.name,
        "finished": older.path.name,
        "status": WAITING,
        "started": 1000.0,
        "waiting_for": "alice+x+t2+r",
    }
    assert due(older, held, 1001.0, 60) == "skip"
    newer_graded = {"entry": "alice+x+t2+r", "finished": "alice+x+t2+r", "status": GRADED, "started": 1000.0}
    assert due(older, newer_graded, 5000.0, 60) == "skip"  # her newer one left the exchange: it still counts


def test_a_grading_always_ends_recorded_so_it_is_never_started_again_in_a_loop(tiny_course, monkeypatch):
    """Handing the workspace over fails (a state file renamed under it) and no result was written: the grading
    still ends as failed, with its folder finished, and the next look does not start it again."""
    from course_utils.grading.hub import watcher as service

    def vanished(*args, **kwargs):
        raise FileNotFoundError("state.json.tmp")

    monkeypatch.setattr(service, "hand_over", vanished)
    watcher = Watcher(tiny_course, Settings(tiny_course.root, tiny_course.root / "exchange", workers=1))
    watcher._grade_steps = lambda task: []
    sub = Submission("alice", "hw", "t1", Path("alice+hw+t1+r"))
    task = Task("hw/alice", "alice", "hw", "t1", sub)
    watcher._start = lambda task, now: None
    watcher.state.update(task.key, status=GRADING, entry=sub.path.name, started=1.0)
    watcher._grade(task)
    entry = watcher.state.entries[task.key]
    assert entry["status"] == "failed" and entry["finished"] == sub.path.name
    assert due(sub, entry, 2.0, 0) == "skip"
    watcher.pool.shutdown()


def test_a_submission_whose_grading_ends_between_the_look_and_the_dispatch_is_not_queued_behind_itself(tiny_course):
    """The look saw it grading (so due); its thread then recorded it graded but had not returned yet: dispatching
    it must leave it graded, not mark it waiting for itself, a state no later look would ever change."""
    watcher = Watcher(tiny_course, Settings(tiny_course.root, tiny_course.root / "exchange", workers=1))
    sub = Submission("alice", "hw", "t1", Path("alice+hw+t1+r"))
    task = Task("hw/alice", "alice", "hw", "t1", sub)
    watcher.state.update(task.key, status=GRADED, entry=sub.path.name, finished=sub.path.name, started=1.0)
    watcher.running["alice"] = watcher.pool.submit(time.sleep, 0)  # her thread, not yet reaped
    assert watcher._dispatch([task], now=2.0) == []
    entry = watcher.state.entries[task.key]
    assert entry["status"] == GRADED and not entry.get("waiting_for")
    assert due(sub, entry, 3.0, 0) == "skip"
    watcher.pool.shutdown()
