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
)
from course_utils.grading.hub.state import GRADED, GRADING
from course_utils.grading.hub.watcher import due

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
