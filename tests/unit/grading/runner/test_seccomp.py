"""course_utils.grading.runner.seccomp: the hand-written filter is a valid program for each architecture, and loaded
into a process it denies what it should and allows what a notebook needs (run in a child process)."""

from __future__ import annotations

import json
import platform
import struct
import subprocess
import sys

import pytest

from course_utils.grading.runner.seccomp import AUDIT_ARCH, program

CHILD = """
import ctypes, errno, json, os, subprocess, threading
from course_utils.grading.runner import seccomp
libc = ctypes.CDLL(None, use_errno=True)
idle = threading.Thread(target=__import__("time").sleep, args=(2,)); idle.start()   # a thread from before
seccomp.install()
def call(*args):
    return "ok" if libc.syscall(*args) >= 0 else errno.errorcode[ctypes.get_errno()]
result = {"unshare": call(272, 0x10000000), "io_uring": call(425, 1, 0), "keyctl": call(250, 0, ctypes.c_long(-4), 0),
          "clone_newns": call(56, 0x00020000 | 17, 0, 0, 0, 0)}
pid = os.fork()
if pid == 0:
    os._exit(7)
result["fork"] = os.waitpid(pid, 0)[1] >> 8
result["spawn"] = subprocess.run(["true"]).returncode
result["threads"] = sorted({open(f"/proc/self/task/{t}/status").read().split("Seccomp:")[1].split()[0]
                            for t in os.listdir("/proc/self/task")})
print(json.dumps(result))
"""


@pytest.mark.parametrize("machine", sorted(AUDIT_ARCH))
def test_every_jump_lands_inside_the_program(machine):
    code = program(machine)
    ops = [struct.unpack("=HBBI", code[i : i + 8]) for i in range(0, len(code), 8)]
    assert ops[-1][0] == 0x06 and len(ops) < 256
    for index, (op, jt, jf, _) in enumerate(ops):
        if op & 0x07 == 0x05:
            assert index + 1 + max(jt, jf) < len(ops)


@pytest.mark.skipif(platform.machine() not in AUDIT_ARCH, reason="no filter for this architecture")
def test_the_filter_denies_namespaces_io_uring_and_keyrings_to_every_thread_and_allows_the_rest():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    assert got == {
        "unshare": "EPERM",
        "io_uring": "ENOSYS",
        "keyctl": "EPERM",
        "clone_newns": "EPERM",
        "fork": 7,
        "spawn": 0,
        "threads": ["2"],
    }
