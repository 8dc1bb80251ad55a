"""course_utils.grading.files: a student folder is read once, through handles, never through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from course_utils.grading.files import (
    TreeError,
    copy_tree,
    digest,
    open_folder,
    read_tree,
    regular_files,
    tree_digest,
)


@pytest.fixture()
def folder(tmp_path) -> Path:
    root = tmp_path / "sub"
    (root / "pkg").mkdir(parents=True)
    (root / "nb.ipynb").write_text("{}")
    (root / "pkg" / "helper.py").write_text("x = 1\n")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "nb-checkpoint.ipynb").write_text("old")
    (root / "secret").symlink_to("/etc/passwd")
    (root / "solutions").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(root / "fifo")
    return root


def test_regular_files_are_copied_and_links_pipes_and_checkpoints_are_not(folder, tmp_path):
    report = copy_tree(folder, tmp_path / "copy")
    assert sorted(report.copied) == ["nb.ipynb", "pkg/helper.py"]
    assert sorted(report.skipped) == ["fifo: a pipe", "secret: a link", "solutions: a link"]
    assert (tmp_path / "copy" / "pkg" / "helper.py").read_text() == "x = 1\n"
    assert not (tmp_path / "copy" / "secret").exists() and not (tmp_path / "copy" / "solutions").exists()


def test_a_folder_that_is_a_link_is_refused(folder, tmp_path):
    (tmp_path / "swapped").symlink_to(folder, target_is_directory=True)
    with pytest.raises(TreeError, match="without following links"):
        read_tree(tmp_path / "swapped", limit=2**20)


def test_sizes_are_capped_by_apparent_size_so_a_sparse_file_costs_nothing(folder, tmp_path):
    with open(folder / "sparse", "wb") as handle:
        handle.truncate(3 * 2**30)  # 3 GiB apparent, a few KiB allocated
    report = copy_tree(folder, tmp_path / "copy", limit=2**20)
    assert "sparse: over the size limit" in report.skipped
    assert report.bytes < 2**20 and not (tmp_path / "copy" / "sparse").exists()


def test_the_limit_counts_every_file_together(folder, tmp_path):
    (folder / "big.bin").write_bytes(b"x" * 1000)
    files = read_tree(folder, limit=1010)
    assert sum(len(data) for _, data in files) <= 1010


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another account needs root")
def test_files_of_another_account_are_refused_when_an_owner_is_required(folder):
    os.chown(folder, 65534, 65534)
    os.chown(folder / "nb.ipynb", 65534, 65534)
    files = dict(read_tree(folder, limit=2**20, owner=65534))
    assert "nb.ipynb" in files and "pkg/helper.py" not in files  # helper.py is root's
    with pytest.raises(TreeError, match="does not belong"):
        open_folder(folder, owner=12345)


def test_top_level_only_and_hidden_files(folder):
    (folder / ".hidden").write_text("h")
    assert [rel for rel, _ in read_tree(folder, limit=2**20, recursive=False)] == [".hidden", "nb.ipynb"]
    assert ".hidden" not in [rel for rel, _ in read_tree(folder, limit=2**20, hidden=False)]
    assert sorted(regular_files(folder)) == ["nb.ipynb", "pkg/helper.py"]


def test_the_tree_digest_follows_content_and_counts_links_as_links(folder):
    before = tree_digest(folder, "key")
    assert tree_digest(folder, "key") == before and tree_digest(folder, "other") != before
    (folder / "pkg" / "helper.py").write_text("x = 2\n")
    changed = tree_digest(folder, "key")
    assert changed != before
    (folder / "secret").unlink()
    (folder / "secret").symlink_to("/etc/hostname")  # another target: still "a link"
    assert tree_digest(folder, "key") == changed


def test_digest_skips_folders_and_checkpoints(tmp_path):
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a.ipynb").write_text("x")
    assert digest([tmp_path, tmp_path / ".ipynb_checkpoints" / "a.ipynb"]) == digest([])
