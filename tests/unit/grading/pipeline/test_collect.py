"""collect: submissions arrive as folders, notebooks or zips; nothing unsafe is unpacked and nothing
that does not match is dropped silently."""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from course_utils.grading.course import Course, is_safe_id
from course_utils.grading.pipeline.collect import collect, unpack_zip

NB = "hw_exercises"


@pytest.fixture()
def course(tmp_path) -> Course:
    """A tiny course with one assignment 'hw' holding one notebook."""
    (tmp_path / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.source_directory = 'solutions'\n"
        "c.CourseDirectory.submitted_directory = 'grading/submitted'\n"
        "c.CourseDirectory.autograded_directory = 'grading/autograded'\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{tmp_path}/grading/gradebook.db'\n"
    )
    (tmp_path / "solutions" / "hw").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "solutions" / "hw" / f"{NB}.ipynb")
    return Course.load(tmp_path)


def _zip(path: Path, members: dict[str, str], links: dict[str, str] | None = None) -> Path:
    links = links or {}
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_student_ids_must_be_plain_names():
    assert is_safe_id("alice.smith") and is_safe_id("s1234")
    assert not any(map(is_safe_id, ["../alice", "a/b", ".hidden", "", "x" * 101]))


def test_zip_refuses_links_absolute_and_climbing_paths(tmp_path):
    archive = _zip(
        tmp_path / "a.zip",
        {"../evil.txt": "x", "/abs.txt": "x", f"work/{NB}.ipynb": "{}"},
        links={"work/link": "/etc/passwd"},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    problems = unpack_zip(archive, dest)
    assert sorted(p.name for p in dest.rglob("*")) == [f"{NB}.ipynb"]
    assert len(problems) == 3 and all("refused member" in p for p in problems)
    assert not (tmp_path / "evil.txt").exists()


def test_a_zip_that_is_not_a_zip_is_reported(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    assert "not a readable zip" in unpack_zip(bad, tmp_path)[0]


def test_collect_takes_every_layout_and_reports_what_does_not_match(course, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "ann" / "hw").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), inbox / "ann" / "hw" / f"{NB}.ipynb")
    (inbox / "ann" / "hw" / "helper.py").write_text("x = 1\n")
    (inbox / "ann" / "hw" / "secret").symlink_to("/etc/passwd")
    (inbox / "ann" / "nope").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), inbox / "bob.ipynb")
    _zip(inbox / "cat.zip", {f"cat_hw/{NB}.ipynb": nbformat.writes(nbformat.v4.new_notebook())})
    (inbox / "dan.txt").write_text("hello")
    (inbox / "bad name.ipynb").write_text("{}")
    report = collect(course, inbox, assignment="hw")
    assert sorted(report.collected) == [("ann", "hw"), ("bob", "hw"), ("cat", "hw")]
    for student in ("ann", "bob", "cat"):
        assert (course.submitted_dir / student / "hw" / f"{NB}.ipynb").is_file()
    assert (course.submitted_dir / "ann" / "hw" / "helper.py").is_file()
    assert not (course.submitted_dir / "ann" / "hw" / "secret").exists()
    text = "\n".join(report.problems)
    for phrase in (
        "ann/nope: no such assignment",
        "secret: is a link",
        "dan.txt: neither",
        "'bad name' is not a usable student id",
    ):
        assert phrase in text, text


def test_collect_twice_replaces_the_submission(course, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    nbformat.write(nbformat.v4.new_notebook(), inbox / "eve.ipynb")
    collect(course, inbox, assignment="hw")
    (inbox / "eve.ipynb").unlink()
    _zip(inbox / "eve.zip", {f"{NB}.ipynb": nbformat.writes(nbformat.v4.new_notebook()), "data.csv": "1,2"})
    collect(course, inbox, assignment="hw")
    assert sorted(os.listdir(course.submitted_dir / "eve" / "hw")) == ["data.csv", f"{NB}.ipynb"]


def test_a_single_file_needs_an_assignment(course, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    nbformat.write(nbformat.v4.new_notebook(), inbox / "fay.ipynb")
    report = collect(course, inbox)
    assert report.collected == [] and "needs --assignment" in report.problems[0]


def _damaged_zips(tmp_path: Path) -> dict[str, Path]:
    """One archive per kind of damage, each also holding a good notebook that must still be collected."""
    good = json.dumps(nbformat.v4.new_notebook())
    zips = {}
    crc = _zip(tmp_path / "crc.zip", {f"{NB}.ipynb": good, "data.txt": "A" * 200})
    raw = bytearray(crc.read_bytes())
    at = raw.rindex(b"A" * 200)
    raw[at] = ord("B")  # the data no longer matches its CRC
    crc.write_bytes(bytes(raw))
    zips["bad_crc"] = crc
    deflated = tmp_path / "deflate.zip"
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{NB}.ipynb", good, compress_type=zipfile.ZIP_STORED)
        zf.writestr("data.bin", os.urandom(2000))
    raw = bytearray(deflated.read_bytes())
    start = raw.index(b"data.bin") + len("data.bin")
    raw[start + 10 : start + 60] = b"\xff" * 50  # corrupt deflate stream
    deflated.write_bytes(bytes(raw))
    zips["corrupt_deflate"] = deflated
    encrypted = _zip(tmp_path / "enc.zip", {f"{NB}.ipynb": good, "secret.txt": "x"})
    raw = bytearray(encrypted.read_bytes())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # set the "encrypted" flag on secret.txt's headers
        at = raw.rindex(header)
        flag = at + (6 if header == b"PK\x03\x04" else 8)
        raw[flag] |= 1
    encrypted.write_bytes(bytes(raw))
    zips["encrypted"] = encrypted
    zips["file_and_folder"] = _zip(tmp_path / "clash.zip", {f"{NB}.ipynb": good, "a": "file", "a/b.txt": "nested"})
    zips["dot_member"] = _zip(tmp_path / "dot.zip", {f"{NB}.ipynb": good, ".": "x", "./": "y"})
    return zips


def test_a_damaged_zip_member_is_reported_and_the_rest_is_collected(course, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for student, archive in _damaged_zips(tmp_path).items():
        shutil.copy(archive, inbox / f"{student}.zip")
    shutil.copy(
        _zip(tmp_path / "honest.zip", {f"{NB}.ipynb": json.dumps(nbformat.v4.new_notebook())}), inbox / "zz_honest.zip"
    )
    report = collect(course, inbox, assignment="hw")
    collected = {student for student, _ in report.collected}
    assert collected == {"bad_crc", "corrupt_deflate", "encrypted", "file_and_folder", "dot_member", "zz_honest"}
    for student in collected:
        assert (course.submitted_dir / student / "hw" / f"{NB}.ipynb").is_file(), student
    text = "\n".join(report.problems)
    assert "bad_crc.zip: member 'data.txt' could not be extracted (BadZipFile" in text
    assert "corrupt_deflate.zip: member 'data.bin' could not be extracted" in text
    assert "encrypted.zip: refused member 'secret.txt' (encrypted)" in text
    assert "file_and_folder.zip: member 'a/b.txt' could not be extracted" in text
    assert "dot_member.zip: refused member '.'" in text


def test_hidden_entries_are_reported_and_ids_must_match_whole(course, tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / ".alice" / "hw").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), inbox / "bob\n.ipynb")
    report = collect(course, inbox, assignment="hw")
    assert report.collected == []
    assert any("'.alice': a hidden file or folder; skipped" in p for p in report.problems)
    assert any("'bob\\n' is not a usable student id" in p for p in report.problems)
    assert not is_safe_id("alice\n") and not is_safe_id("alice\nbob")
