"""Course updates keep the learner's work: on the hub (the lessons repo ``make hub`` publishes, merged into a
student's home by nbgitpuller, as each login does) and for ``make lab`` users (``make update``, the same
merge). Real git and real nbgitpuller, on throw-away repositories.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.grading.lab import update as update_module
from course_utils.grading.lab.update import UpdateError, update, upstream
from support import REPO

ROOT = REPO
LESSON = "notebooks/01_tensors_vs_numpy.ipynb"
GIT_ID = ["-c", "user.email=test@localhost", "-c", "user.name=test"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *GIT_ID, *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def course_repo(path: Path) -> Path:
    """A course repository with lesson 01 (as shipped, outputs included) and a README, committed."""
    (path / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / LESSON, path / LESSON)
    (path / "README.md").write_text("The course\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "v1")
    return path


def learner_edits(lesson: Path) -> tuple[str, str]:
    """What a learner does: edit the last code cell and run it (new source, new output); returns both."""
    nb = nbformat.read(lesson, as_version=4)
    cell = [c for c in nb.cells if c.cell_type == "code"][-1]
    cell.source += "\nprint('my own experiment')"
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="my own experiment\n")]
    cell.execution_count = 99
    nbformat.write(nb, lesson)
    return cell.source, "my own experiment\n"


def course_update(repo: Path, commit: bool = True) -> str:
    """What the course's authors do: reword lesson 01's first heading and add lesson 09; returns the heading."""
    nb = nbformat.read(repo / LESSON, as_version=4)
    heading = "# Tensors vs NumPy (updated edition)"
    nb.cells[0].source = heading + "\n" + nb.cells[0].source.split("\n", 1)[1]
    nbformat.write(nb, repo / LESSON)
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Lesson 09")]),
        repo / "notebooks" / "09_new_lesson.ipynb",
    )
    if commit:
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v2")
    return heading


def assert_work_kept_and_update_arrived(lesson: Path, source: str, output: str, heading: str) -> None:
    nb = nbformat.read(lesson, as_version=4)  # still a notebook
    cell = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert cell.source == source
    assert [o.get("text") for o in cell.outputs] == [output] and cell.execution_count == 99
    assert nb.cells[0].source.startswith(heading)
    assert (lesson.parent / "09_new_lesson.ipynb").is_file()


def test_make_update_merges_the_course_update_and_keeps_the_learners_edits_and_outputs(tmp_path):
    origin = course_repo(tmp_path / "origin")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    source, output = learner_edits(clone / LESSON)
    (clone / "my_notes.txt").write_text("mine")
    heading = course_update(origin)
    done = subprocess.run(
        [sys.executable, "-m", "course_utils.grading", "lab", "update", "--repo", str(clone)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "your edits and outputs are kept" in done.stdout
    assert_work_kept_and_update_arrived(clone / LESSON, source, output, heading)
    assert (clone / "my_notes.txt").read_text() == "mine"
    assert git(clone, "status", "--porcelain", "--untracked-files=no") == ""


def test_where_the_learner_and_the_course_changed_the_same_lines_the_learners_version_wins(tmp_path):
    origin = course_repo(tmp_path / "origin")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    for repo, text in ((clone, "my heading"), (origin, "the course's new heading")):
        nb = nbformat.read(repo / LESSON, as_version=4)
        nb.cells[0].source = f"# {text}"
        nbformat.write(nb, repo / LESSON)
    git(origin, "commit", "-q", "-am", "v2")
    notes = update(clone, echo=lambda line: None)
    assert notes == []
    assert nbformat.read(clone / LESSON, as_version=4).cells[0].source == "# my heading"


def test_a_notebook_the_merge_left_unreadable_is_restored_to_the_learners_version_beside_the_courses(tmp_path):
    """git's line-wise merge can, rarely, join two edits of one notebook into text that is not JSON; here such
    a merge commit is made by hand (git itself merges these two edits cleanly)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    base = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("base")])
    nbformat.write(base, repo / "a.ipynb")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "switch", "-q", "-c", "course")
    base.cells[0].source = "the course's version"
    nbformat.write(base, repo / "a.ipynb")
    git(repo, "commit", "-q", "-am", "v2")
    git(repo, "switch", "-q", "main")
    base.cells[0].source = "my version"
    nbformat.write(base, repo / "a.ipynb")
    git(repo, "commit", "-q", "-am", "mine")
    before = git(repo, "rev-parse", "HEAD")
    git(repo, "merge", "-q", "-s", "ours", "course", "-m", "merge")
    (repo / "a.ipynb").write_text('{"cells": [}')
    git(repo, "commit", "-q", "--amend", "-am", "merge")
    notes = update_module.repair_notebooks(repo, before)
    assert len(notes) == 1 and "a.ipynb" in notes[0] and "a.course-update.ipynb" in notes[0]
    assert nbformat.read(repo / "a.ipynb", as_version=4).cells[0].source == "my version"
    assert nbformat.read(repo / "a.course-update.ipynb", as_version=4).cells[0].source == "the course's version"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_make_update_says_what_to_do_when_it_cannot_update(tmp_path):
    with pytest.raises(UpdateError, match="not a git clone"):
        upstream(tmp_path)
    repo = course_repo(tmp_path / "alone")
    with pytest.raises(UpdateError, match="tracks no remote branch"):
        upstream(repo)


def test_a_hub_students_lessons_keep_their_edits_and_outputs_across_a_course_update(tmp_path):
    from nbgitpuller.pull import GitPuller

    from course_utils.grading.hub.classroom import Classroom, publish_lessons

    course = course_repo(tmp_path / "course")
    room = Classroom(tmp_path / "prefix", ["alice"], "teacher")
    assert publish_lessons(room, course)
    home = tmp_path / "home" / "pytorch-foundations"
    home.parent.mkdir()
    pull = lambda: list(GitPuller(str(room.lessons), str(home), branch="main").pull())  # noqa: E731  (each login)
    pull()
    source, output = learner_edits(home / LESSON)
    heading = course_update(course, commit=False)  # make hub publishes the working tree, committed or not
    assert publish_lessons(room, course)
    assert not publish_lessons(room, course)  # nothing new: no empty commit
    pull()
    assert_work_kept_and_update_arrived(home / LESSON, source, output, heading)
