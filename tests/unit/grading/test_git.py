"""course_utils.grading.git: one way to run git, one clear error."""

from __future__ import annotations

import pytest

from course_utils.grading.git import GitError, git, tracked_files


def test_git_runs_in_the_folder_and_commits_as_the_course(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "ignored.txt").write_text("i")
    (tmp_path / ".gitignore").write_text("ignored.txt\n")
    (tmp_path / "link").symlink_to("a.txt")
    assert tracked_files(tmp_path) == [".gitignore", "a.txt"]  # new files too, never ignored ones or links
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first", as_course=True)
    assert git(tmp_path, "log", "--format=%an <%ae>") == "course <course@localhost>"


def test_a_failing_command_names_itself_the_folder_and_gits_words(tmp_path):
    with pytest.raises(GitError, match=r"git rev-parse HEAD failed in .*: fatal: not a git repository"):
        git(tmp_path, "rev-parse", "HEAD")
    assert git(tmp_path, "rev-parse", "HEAD", check=False) == ""
