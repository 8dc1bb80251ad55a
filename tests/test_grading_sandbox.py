"""The jail: what a jailed process can see and do, the limits that stop it, and the records read-back."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_utils.grading.jobs import MAX_RECORD_BYTES, read_records
from course_utils.grading.sandbox import BASE_UID, Jail, Limits, hand_over, probe, sandbox_command

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)")


@pytest.fixture()
def jail(tmp_path) -> Jail:
    dirs = [tmp_path / n for n in ("w", "r", "i")]
    for d in dirs:
        d.mkdir()
    jail = Jail(*dirs, uid=BASE_UID + 7)
    hand_over(jail)
    return jail


def jailed(jail, code: str, limits: Limits = Limits()) -> subprocess.CompletedProcess:
    return subprocess.run(sandbox_command([sys.executable, "-c", code], jail, limits),
                          capture_output=True, text=True, timeout=120)


@needs_bwrap
def test_probe_passes_where_bwrap_works():
    probe()


@needs_bwrap
def test_a_jailed_process_sees_only_its_own_files(jail):
    done = jailed(jail, "import json, os, sys; print(json.dumps([os.getuid(), os.getcwd(), "
                        "sorted(os.listdir(os.path.dirname(sys.prefix)))]))")
    assert done.returncode == 0, done.stderr
    uid, cwd, repo_view = json.loads(done.stdout)
    assert (uid, cwd) == (BASE_UID + 7, "/submission")
    assert "solutions" not in repo_view and "grading" not in repo_view and "tests" not in repo_view
    assert "course_utils" in repo_view


@needs_bwrap
def test_a_jailed_process_cannot_write_outside_its_folders_or_reach_the_network(jail):
    code = ("import socket, sys\n"
            "for path in [sys.prefix + '/x', '/etc/x', '/usr/x']:\n"
            "    try: open(path, 'w'); print('WROTE', path)\n"
            "    except OSError: pass\n"
            "try: socket.create_connection(('1.1.1.1', 53), timeout=2); print('NET')\n"
            "except OSError: pass\n"
            "open('mine.txt', 'w').write('ok')\n")
    done = jailed(jail, code)
    assert done.returncode == 0 and "WROTE" not in done.stdout and "NET" not in done.stdout, done
    assert (jail.work_dir / "mine.txt").read_text() == "ok"


@needs_bwrap
def test_rlimits_stop_memory_and_cpu_hogs(jail):
    limits = Limits(memory_bytes=1 * 2**30, cpu_seconds=2)
    memory = jailed(jail, "x = bytearray(2 * 2**30)", limits)
    assert "MemoryError" in memory.stderr
    cpu = jailed(jail, "while True: pass", limits)
    assert cpu.returncode != 0


def test_record_files_are_read_without_following_links(tmp_path):
    torch.save({"a/b": {"kind": "value", "value": 1, "params": {}}}, tmp_path / "real.pt")
    records = tmp_path / "records"
    records.mkdir()
    (records / "records.pt").symlink_to(tmp_path / "real.pt")
    with pytest.raises(ValueError, match="link"):
        read_records(records)


def test_huge_or_pickled_record_files_are_rejected(tmp_path):
    with open(tmp_path / "records.pt", "wb") as handle:
        handle.truncate(MAX_RECORD_BYTES + 1)
    with pytest.raises(ValueError, match="limit"):
        read_records(tmp_path)
    import pickle
    (tmp_path / "records.pt").write_bytes(pickle.dumps({"a/b": os.system}))
    with pytest.raises(ValueError):
        read_records(tmp_path)


def test_no_record_file_means_no_records(tmp_path):
    assert read_records(tmp_path) == {}


def test_without_bwrap_grading_refuses_with_what_to_do(monkeypatch):
    import course_utils.grading.sandbox as sandbox
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install -y bubblewrap.*--no-sandbox"):
        sandbox.probe()
