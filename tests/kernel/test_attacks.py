"""The attack suite, one jailed kernel per attack (issue 25): each property is proved by attacking it for real.

Every test runs a hostile notebook through ``run_job`` in a kernel forked from a jailed template and checks the
outcome: the grader's memory stays bounded, the kernel is stopped with a note that names what it did, nothing
it wrote survives into the next job, nothing of the test cells' source comes back in a message. Tests that
measure the grader's peak memory run the grader in a process of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from course_utils.grading.runner import jobs as jobs_module
from course_utils.grading.runner.jobs import Job, run_job
from course_utils.grading.runner.sandbox import JobLimits, mode
from course_utils.grading.runner.uids import FIRST_UID, lease_uid
from support import REPO

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (make sandbox-tools)")
LIMITS = JobLimits(cell_timeout=60, notebook_timeout=120, cpu_seconds=120, memory_bytes=3 * 2**30)
#: a small output and message budget, so that floods are over quickly
SMALL = JobLimits(
    cell_timeout=60,
    notebook_timeout=120,
    cpu_seconds=120,
    memory_bytes=3 * 2**30,
    output_bytes=4096,
    message_bytes=2**20,
)


def notebook(*sources) -> bytes:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(nb).encode()


def jailed(*sources, limits=LIMITS):
    out = run_job(Job("mallory", "hw", "hw", notebook(*sources), [], None, limits, sandboxed=True))
    return out, (nbformat.reads(out.notebook_json, as_version=4) if out.notebook_json else None)


def text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def notes(out) -> str:
    return " | ".join(out.limits_hit)


# ---------------------------------------------------------------- 2. the grader's memory, whatever a kernel sends

IN_ITS_OWN_PROCESS = """
import json, resource, sys
sys.path[:0] = ["tests", "tests/kernel"]
from test_attacks import jailed, text, LIMITS
import nbformat
from course_utils.grading.runner.provisioner import Template
Template.shared(True, LIMITS)   # started before the baseline: its imports are not the attack's
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out, nb = jailed("print('before')", {attack!r}, "print('after')")
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
print(json.dumps([grew, out.problem, out.limits_hit, len(out.notebook_json or ''), [text(c) for c in nb.cells]]))
"""


def graded_in_its_own_process(attack: str):
    """(MiB the grader's peak grew by, problem, notes, notebook size, each cell's printed text)."""
    done = subprocess.run(
        [sys.executable, "-c", IN_ITS_OWN_PROCESS.format(attack=attack)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


MANY_FRAMES = (
    "k = get_ipython().kernel\n"
    "b = memoryview(bytearray(64 * 2**20))\n"
    "k.session.send(k.iopub_socket, 'display_data', {'data': {'text/plain': 'x'}, 'metadata': {}},\n"
    "               parent=k.get_parent(), buffers=[b] * 64)\n"
    "import time; time.sleep(30)"
)


def test_one_message_of_64_frames_of_64_mib_is_refused_before_the_grader_reads_it():
    # before: a per-frame limit (ZMQ_MAXMSGSIZE, 128 MiB) let all 4 GiB through; the grader reached 3.3 GB
    grew_mib, problem, hits, size, printed = graded_in_its_own_process(MANY_FRAMES)
    assert grew_mib < 2 * JobLimits().message_bytes // 2**20, f"the grader's peak grew by {grew_mib} MiB"
    assert problem is None and printed[0] == "before\n" and printed[2] == ""
    assert "message size limit (32 MiB for one message, all its parts)" in " ".join(hits), hits


def test_frames_under_the_limit_each_count_together():
    # 48 frames of 512 KiB: each under the 1 MiB message limit, together far over it
    out, nb = jailed(
        "k = get_ipython().kernel\nb = memoryview(bytearray(2**20 // 2))\n"
        "k.session.send(k.iopub_socket, 'display_data', {'data': {'text/plain': 'x'}, 'metadata': {}},\n"
        "               parent=k.get_parent(), buffers=[b] * 48)\nimport time; time.sleep(30)",
        "print('after')",
        limits=SMALL,
    )
    assert "message size limit (1 MiB for one message, all its parts)" in notes(out), notes(out)
    assert text(nb.cells[1]) == ""


AMPLIFIER = (
    "from IPython.display import display, update_display\n"
    "for i in range(6500):\n    display({'text/plain': 'amp'}, raw=True, display_id='amp')\n"
    "update_display({'text/plain': 'y' * (450 * 1024)}, raw=True, display_id='amp')"
)


def test_a_display_update_copied_into_thousands_of_outputs_is_charged_per_output():
    # before: 6,500 displays of one id and one 450 KiB update: 8.9 GB peak, 252 s (re-serialised per cell)
    grew_mib, problem, hits, size, printed = graded_in_its_own_process(AMPLIFIER)
    assert grew_mib < 200, f"the grader's peak grew by {grew_mib} MiB"
    assert hits == ["output limit (1024 KiB): later output dropped"], hits  # not stopped: later output dropped
    assert size < 2 * 2**20 and printed[0] == "before\n"


def test_memfd_pages_count_against_the_kernels_memory():
    # before: 3,024 MiB held in memfd under --memory-mb 2048, counted nowhere
    hog = (
        "import os\nchunk = b'x' * 2**24\nfds = [os.memfd_create(f'hog{i}') for i in range(16)]\n"  # 16 x 256 MiB:
        "for fd in fds:\n    for _ in range(15):\n        os.write(fd, chunk)\n"  # each under the file limit
        "print('held 3.75 GiB')\nimport time; time.sleep(30)"
    )
    out, nb = jailed(
        hog, "print('after')", limits=JobLimits(cell_timeout=60, notebook_timeout=120, memory_bytes=2 * 2**30)
    )
    assert "memory limit (2048 MiB for all the kernel's processes and in-memory files)" in notes(out), notes(out)
    assert "held" not in text(nb.cells[0])


def test_system_v_shared_memory_is_capped_per_job():
    # before: detached SysV segments held memory outside every count
    grab = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "big = libc.shmget(0, ctypes.c_size_t(2**30), 0o1600)\n"
        "ids = [libc.shmget(0, ctypes.c_size_t(16 * 2**20), 0o1600) for _ in range(16)]\n"
        "print(big, sum(i >= 0 for i in ids))"
    )
    out, nb = jailed(grab)
    big, made = text(nb.cells[0]).split()
    assert big == "-1" and int(made) * 16 <= LIMITS.disk_bytes // 4 // 2**20


def test_the_oom_killer_takes_the_kernel_not_the_grader():
    out, nb = jailed(
        "print(open('/proc/self/oom_score_adj').read().strip())\n"
        "try:\n    open('/proc/self/oom_score_adj', 'w').write('-1000'); print('lowered')\n"
        "except OSError as e:\n    print(e.strerror)"
    )
    assert text(nb.cells[0]).splitlines()[0] == "1000" and "lowered" not in text(nb.cells[0])
    from course_utils.grading.runner.engine import GRADER_OOM_SCORE, Engine

    with Engine(workers=1):
        score = int(open("/proc/self/oom_score_adj").read())
    effective = int(
        dict(line.split(":\t") for line in open("/proc/self/status").read().splitlines() if ":\t" in line)["CapEff"], 16
    )
    assert score == GRADER_OOM_SCORE if effective & (1 << 24) else score <= 0  # CAP_SYS_RESOURCE lowers it


# ---------------------------------------------------------------- 3. nothing of the test cells comes back in a message

LEAKER = (
    "import os, torch\nsources = []\nip = get_ipython()\n"
    "ip.input_transformers_post.append(lambda lines: (sources.append(''.join(lines)), lines)[1])\n"
    "def save(result):\n"
    "    torch.save({'LEAK:' + '|'.join(sources): {'kind': 'value', 'value': 1, 'params': {}}},\n"
    "               os.environ['COURSE_RECORD_FILE'])\n"
    "ip.events.register('post_run_cell', save)"
)
HIDDEN = "assert double(21) == 42  # SECRET-HIDDEN-TEST-LINE"


def test_a_record_key_made_of_the_test_cells_source_is_refused_without_quoting_it():
    # before: the rejection quoted the key with repr; all 22 hidden-test lines reached the feedback
    out, _ = jailed(LEAKER, "def double(x):\n    return 2 * x", HIDDEN)
    assert out.records_bytes and out.records(LIMITS.record_bytes) == {}
    assert out.problem and "malformed" in out.problem
    assert "SECRET-HIDDEN" not in out.problem and "LEAK" not in out.problem and "double" not in out.problem


# ---------------------------------------------------------------- 4. every field normalised before rendering


def test_a_kernel_sent_execution_count_of_the_wrong_type_cannot_opt_out_of_grading():
    # before: "NOT GRADED" on every run and autograde exit 1 (a way to keep an earlier grade)
    out, nb = jailed(
        "k = get_ipython().kernel\n"
        "k.session.send(k.iopub_socket, 'execute_result', {'data': {'text/plain': 'x'}, 'metadata': {},\n"
        "               'execution_count': 'x'}, parent=k.get_parent())\n"
        "_ = k.session.send(k.iopub_socket, 'execute_input',\n"
        "                   {'code': '', 'execution_count': 'y' * 2**24}, parent=k.get_parent())",
        "print('after')",
    )
    assert out.problem is None and not out.internal_error and text(nb.cells[1]) == "after\n"
    nbformat.validate(nb)
    assert nb.cells[0].execution_count in (None, 1) and len(out.notebook_json) < 2**20
    assert all(
        o.get("execution_count") in (None,) or isinstance(o.get("execution_count"), int) for o in nb.cells[0].outputs
    )


def test_a_submitted_notebook_with_a_bad_field_is_graded_as_not_a_valid_notebook():
    nb = json.loads(notebook("print(1)"))
    nb["cells"][0]["execution_count"] = "x"
    out = run_job(Job("mallory", "hw", "hw", json.dumps(nb).encode(), [], None, LIMITS, sandboxed=True))
    assert (
        out.problem
        == ("hw.ipynb is not a valid notebook: a field does not follow the notebook format, at cells/0/execution_count")
        and not out.internal_error
    )


# ---------------------------------------------------------------- 5. rendering bounded per notebook

PATHOLOGICAL = "*a " * 3300 + "x" + " a*" * 3300


def test_markdown_that_takes_seconds_to_render_is_shown_as_text_past_the_budget():
    # before: 40 such cells took autograde 270 s, in the job's thread, holding the GIL
    nb = nbformat.reads(notebook("print('ran')"), as_version=4)
    nb.cells += [nbformat.v4.new_markdown_cell(PATHOLOGICAL) for _ in range(40)]
    limits = JobLimits(cell_timeout=60, notebook_timeout=120, memory_bytes=3 * 2**30, render_seconds=3)
    out = run_job(Job("mallory", "hw", "hw", nbformat.writes(nb).encode(), [], None, limits, sandboxed=True))
    shown = nbformat.reads(out.notebook_json, as_version=4)
    assert out.problem is None and text(shown.cells[1]) == "ran\n"
    assert "shown as plain text: making it safe to show took longer than 3 s" in shown.cells[0].source
    assert shown.cells[2].source.startswith("<div>\n<pre>*a *a")


# ---------------------------------------------------------------- 6. no state survives from one job to the next

PLANT = (
    "import ctypes, os, socket\nlibc = ctypes.CDLL(None, use_errno=True)\ndone = []\n"
    "for path in ('/dev/planted', '/dev/shm/planted', '/tmp/planted', '/dev/pts/planted'):\n"
    "    try:\n        open(path, 'w').write('x' * 2**20); done.append(path)\n    except OSError: pass\n"
    "done.append(('shm', libc.shmget(0x5eed, ctypes.c_size_t(2**20), 0o1600)))\n"
    "done.append(('key', libc.syscall(248, b'user', b'planted', b'v', 1, ctypes.c_long(-4))))\n"
    "print(done)"
)
LOOK = (
    "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "found = [p for p in ('/dev/planted', '/dev/shm/planted', '/tmp/planted') if os.path.exists(p)]\n"
    "found.append(('shm', libc.shmget(0x5eed, ctypes.c_size_t(0), 0)))\n"
    "found.append(('dev', sorted(os.listdir('/dev'))))\nprint(found)"
)
DEV = ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]


def test_nothing_one_job_leaves_is_there_for_the_next():
    # before (rootless): bwrap's /dev was one tmpfs for every job of a template: 6 x 200 MiB planted, seen later
    _, first = jailed(PLANT)
    planted = text(first.cells[0])
    assert "/dev/planted" not in planted and "('key', -1)" in planted, planted
    _, second = jailed(LOOK)
    assert text(second.cells[0]).strip() == str([("shm", -1), ("dev", DEV)])


# ---------------------------------------------------------------- 7. the rest


def test_keyrings_a_uid_held_are_cleared_when_it_is_leased_again(monkeypatch):
    # before: one uid held keys of two students; keys from hour-old runs still there
    if mode() != "root" or not os.path.exists("/usr/bin/python3") or not shutil.which("setpriv"):
        pytest.skip("root mode only (kernels run as leased uids)")
    keyring = (
        "import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "if sys.argv[1] == 'add':\n"
        "    print(libc.syscall(248, b'user', b'secret', b'hour-old', 8, ctypes.c_long(-4)))\n"
        "buf = ctypes.create_string_buffer(4096)\n"
        "print(libc.syscall(250, 11, ctypes.c_long(-4), buf, 4096) // 4)"
    )  # KEYCTL_READ: 4 bytes a key
    with lease_uid(first=FIRST_UID + 3999, count=1) as uid:
        as_uid = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/python3", "-c", keyring]
        added = subprocess.run([*as_uid, "add"], capture_output=True, text=True, timeout=60).stdout.split()
        assert int(added[0]) > 0 and int(added[1]) >= 1, added
        monkeypatch.setattr(jobs_module, "lease_uid", lambda: contextlib.nullcontext(uid))
        out, nb = jailed("import os; print(os.getuid())")
        assert text(nb.cells[0]).strip() == str(uid)
        after = subprocess.run([*as_uid, "look"], capture_output=True, text=True, timeout=60).stdout.split()
        assert after == ["0"], after


CHILDREN = (
    "import os, signal, time\n"
    "{reap}\n"
    "for _ in range(8):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        end = time.process_time() + 1.0\n"
    "        while time.process_time() < end: pass\n"
    "        os._exit(0)\n"
    "    {wait}\n"
    "print('spent'); time.sleep(20)"
)


@pytest.mark.parametrize("how", ["ignored", "waited", "orphaned"])
def test_cpu_of_children_the_kernel_reaped_counts(how):
    # before: 24.4 CPU-s under --cpu-seconds 20, no note (children reaped with SIGCHLD ignored)
    reap = {"ignored": "signal.signal(signal.SIGCHLD, signal.SIG_IGN)", "waited": "", "orphaned": ""}[how]
    # one child at a time: with SIGCHLD ignored, waitpid waits for its end, then finds nothing to reap
    wait = {
        "ignored": "exec('try:\\n    os.waitpid(pid, 0)\\nexcept ChildProcessError: pass')",
        "waited": "os.waitpid(pid, 0)",
        "orphaned": "time.sleep(0.3)",
    }[how]
    source = CHILDREN.format(reap=reap, wait=wait)
    if how == "orphaned":  # a double fork: the grandchild burns, its parent is gone, pid 1 reaps it
        source = source.replace("    if pid == 0:\n", "    if pid == 0:\n        if os.fork(): os._exit(0)\n")
    out, _ = jailed(
        source, limits=JobLimits(cell_timeout=60, notebook_timeout=120, cpu_seconds=4, memory_bytes=3 * 2**30)
    )
    assert "CPU-time limit (4 s for all the kernel's processes)" in notes(out), (how, notes(out), out.stages)


def test_every_message_counts_status_messages_to_nobody_included():
    # before: 1,047,000 status messages in 90 s, none counted; bystanders 1.5-4.5x slower
    flood = (
        "k = get_ipython().kernel\nfor i in range(100000):\n"
        "    k.session.send(k.iopub_socket, 'status', {'execution_state': 'busy'}, parent={'msg_id': 'nobody'})"
    )
    out, nb = jailed(flood, "print('after')", limits=SMALL)
    assert "output limit (4 KiB): the kernel kept sending messages after that and was stopped" in notes(out), notes(out)
    assert text(nb.cells[1]) == ""


def test_a_kernel_that_kills_every_process_it_can_gets_an_accurate_note():
    # before: "the kernel was killed (CPU-time or memory limit)"
    out, _ = jailed(
        "import os, signal, subprocess, sys\nkids = [subprocess.Popen(['sleep', '60']) for _ in range(3)]\n"
        "os.kill(-1, signal.SIGKILL)\nos.kill(os.getpid(), signal.SIGKILL)"
    )
    assert "killed by SIGKILL (not by a limit of the grader's" in notes(out), notes(out)
    assert "CPU-time" not in notes(out) and "memory" not in notes(out)


def test_json_nested_100000_deep_is_a_message_the_grader_cannot_read():
    # before: "the kernel died"
    out, _ = jailed(
        "k = get_ipython().kernel\ndeep = ('[' * 100000 + ']' * 100000).encode()\n"
        "k.session.send(k.iopub_socket, 'display_data', deep, parent=k.get_parent())\n"
        "import time; time.sleep(30)"
    )
    assert "sent a message the grader cannot read (e.g. nested too deeply)" in notes(out), notes(out)


def test_kernels_cannot_make_namespaces_use_io_uring_or_keyrings_and_have_no_capabilities():
    # before: unshare(CLONE_NEWUSER) and io_uring worked; the bounding set was full in root mode
    probe = (
        "import ctypes, errno, json\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def call(*a):\n    r = libc.syscall(*a)\n"
        "    return errno.errorcode.get(ctypes.get_errno()) if r < 0 else 'ok'\n"
        "status = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
        "print(json.dumps({'unshare_user': call(272, 0x10000000), 'unshare_ns': call(272, 0x00020000),\n"
        "    'clone_newuser': call(56, 0x10000000 | 17, 0, 0, 0, 0), 'setns': call(308, 0, 0),\n"
        "    'io_uring': call(425, 1, 0), 'keyctl': call(250, 0, ctypes.c_long(-4), 0),\n"
        "    'add_key': call(248, b'user', b'k', b'v', 1, ctypes.c_long(-4)), 'bpf': call(321, 0, 0, 0),\n"
        "    'CapBnd': status['CapBnd'], 'CapEff': status['CapEff'], 'Seccomp': status['Seccomp']}))"
    )
    _, nb = jailed(probe)
    got = json.loads(text(nb.cells[0]))
    assert got == {
        "unshare_user": "EPERM",
        "unshare_ns": "EPERM",
        "clone_newuser": "EPERM",
        "setns": "EPERM",
        "io_uring": "ENOSYS",
        "keyctl": "EPERM",
        "add_key": "EPERM",
        "bpf": "EPERM",
        "CapBnd": "0000000000000000",
        "CapEff": "0000000000000000",
        "Seccomp": "2",
    }


def test_honest_threads_processes_and_subprocesses_still_work_under_the_filter():
    out, nb = jailed(
        "import subprocess, threading, torch\n"
        "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
        "print(subprocess.run(['echo', 'spawned'], capture_output=True, text=True).stdout.strip())\n"
        "print(torch.ones(3).sum().item())"
    )
    assert text(nb.cells[0]) == "thread\nspawned\n3.0\n" and not out.limits_hit
