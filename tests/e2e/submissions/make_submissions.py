"""The grading tests' inbox of exercise-01 submissions: honest ones and attacks, each with what it must score.

Built on ``course_utils.grading.authoring.samples`` (which benchmarks share): ``build_inbox`` writes every scenario
into an inbox folder (nbgrader's layout, flat .ipynb and .zip) and returns, per student id, the points its
answers earn (``samples.POINTS``) and a phrase its comment must hold.

    >>> build_inbox(release_nb, solution_nb, Path("inbox"), course_root)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import nbformat

from course_utils.grading.authoring.samples import (
    POINTS,
    TASKS,
    WRONG,
    answered,
    cell_of,
    earned,
    solution_answers,
)
from course_utils.grading.cells import grade_id

FULL = earned(*TASKS)  # what a submission with every answer right earns


def insert_after(nb, task, source):
    index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == task)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return nb


ATTACK_CELL = r"""
import glob, json, os, socket, sys
import course_utils.checks
attempts = {}
def attempt(name, action):
    try:
        action()
        attempts[name] = "SUCCEEDED"
    except Exception as error:
        attempts[name] = "blocked: " + type(error).__name__
ROOT = {root!r}
SOLUTION = ROOT + "/solutions/01_tensors_vs_numpy/01_tensors_vs_numpy_exercises.ipynb"
attempt("read_solutions", lambda: open(SOLUTION).read())
attempt("read_repo_solutions", lambda: os.listdir("/work/main/solutions"))
attempt("read_gradebook", lambda: open(ROOT + "/grading/gradebook.db", "rb").read())
attempt("list_references", lambda: os.listdir(ROOT + "/grading/references"))
attempt("list_other_students", lambda: os.listdir(ROOT + "/grading/submitted"))
attempt("write_course", lambda: open(ROOT + "/solutions/pwned.txt", "w").write("x"))
attempt("write_venv", lambda: open(sys.prefix + "/pwned.txt", "w").write("x"))
attempt("delete_checks", lambda: os.remove(course_utils.checks.__file__))
attempt("write_etc", lambda: open("/etc/pwned.txt", "w").write("x"))
attempt("network_loopback", lambda: socket.create_connection(("127.0.0.1", 22), timeout=2))
attempt("network_internet", lambda: socket.create_connection(("151.101.0.223", 443), timeout=2))
attempt("signal_jail_init", lambda: os.kill(1, 9))
attempt("read_root_files", lambda: open("/root/.bashrc").read())
print("ATTACKS " + json.dumps(attempts))
"""

PATCH_CHECKS = """
import course_utils.checks as checks
def _quiet(*args, **kwargs):
    return None
for name in ("check_tensor", "check_scalar", "check_grad", "check_module", "record", "compare_records"):
    setattr(checks, name, _quiet)
check_tensor = record = _quiet
"""

PATCH_TORCH = """
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)
"""

SPOOF_VISIBLE = """
import re
def _record_expected_instead(lines):
    source = "".join(lines)
    # rewrite visible checks so they record the expected value (which sits in the visible cell) as the answer
    pattern = r"check_tensor\\((.*?),\\s*(torch\\.tensor\\(.*?\\)),"
    source = re.sub(pattern, r"check_tensor(\\2, \\2,", source, flags=re.S)
    return source.splitlines(keepends=True)
get_ipython().input_transformers_cleanup.append(_record_expected_instead)
"""

PICKLE_RECORDS = """
import os, pickle
class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pwned-by-pickle",))
with open(os.environ["COURSE_RECORD_FILE"], "wb") as handle:
    pickle.dump({"ex01_arange_matrix/two_by_three": Payload()}, handle)
"""

LINK_RECORDS = """
import os
path = os.environ["COURSE_RECORD_FILE"]
if os.path.exists(path):
    os.remove(path)
os.symlink({target!r}, path)
"""


XSS_MARKDOWN = (
    '<script>alert("md")</script><img src=x onerror="alert(1)"> [link](javascript:alert(2)) '
    '<a href="javascript:alert(3)">a</a>'
)
XSS_CELL = r"""
from IPython.display import HTML, Javascript, display
display(HTML('<b>bold</b><script>alert(4)</script><svg onload="alert(5)"></svg>'))
display(Javascript('alert(6)'))
display({'image/svg+xml': '<svg><script>alert(7)</script></svg>'}, raw=True)
"""
# the hidden-test leak: capture the source of every later cell as it runs (the hidden tests among them) and
# write it, encoded, into an earlier output with update_display_data
DISPLAY_LEAK = r"""
import base64
from IPython.display import display
_handle = display("placeholder", display_id=True)
_seen = []
def _steal(info):
    _seen.append(info.raw_cell)
    _handle.update(base64.b64encode("\n".join(_seen).encode()).decode() + "\n" + "\n".join(_seen).encode().hex())
get_ipython().events.register("pre_run_cell", _steal)
"""
DISPLAY_FLOOD = r"""
from IPython.display import display
_handle = display("x", display_id=True)
for _ in range(30):
    _handle.update("y" * 2**20)
"""
DISK_FILL = r"""
import os
for folder in (".", "/tmp", "/dev/shm"):
    try:
        with open(os.path.join(folder, "fill.bin"), "wb") as handle:
            while True:
                handle.write(b"x" * 2**24)
    except OSError as error:
        print(folder, "full:", error.strerror)
"""
CHILD_CPU = r"""
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)   # only the CPU limit (or the wall-time limit) can stop it
children = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(8)]
while True:
    time.sleep(1)
"""
CHILD_MEMORY = r"""
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)   # only the memory limit (or the wall-time limit) can stop it
code = "import time; block = bytearray(2**30); block[::4096] = b'x' * (2**30 // 4096); time.sleep(60)"
children = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
while True:
    time.sleep(1)
"""
PLANTED = b"open('/tmp/planted-ran', 'w').write('x')\nraise SystemExit('a planted module ran')\n"
DEEP_RECORDS = r"""
import os, sys, torch
sys.setrecursionlimit(50_000)
deep = []
for _ in range(5000):
    deep = [deep]
torch.save({"ex01_arange_matrix/two_by_three": {"kind": "value", "value": deep, "params": {}}},
           os.environ["COURSE_RECORD_FILE"])
"""
INFLATED_RECORDS = r"""
import os, torch
huge = torch.zeros(1).expand(2**28)   # 1 GiB of float32 when compared, 4 bytes on disk
torch.save({"ex01_arange_matrix/two_by_three": {"kind": "tensor", "value": huge, "params": {}}},
           os.environ["COURSE_RECORD_FILE"])
"""


def build_inbox(release_nb, solution_nb, inbox: Path, course_root: Path) -> dict[str, tuple[float, str]]:
    """Write every scenario into ``inbox`` (nbgrader layout, flat .ipynb and .zip); return expectations."""
    answers = solution_answers(solution_nb)
    full = answered(release_nb, answers)
    name = "01_tensors_vs_numpy_exercises.ipynb"
    expected: dict[str, tuple[float, str]] = {}

    def write(student, nb, points, phrase, how="dir"):
        expected[student] = (points, phrase)
        if how == "dir":
            folder = inbox / student / "01_tensors_vs_numpy"
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / name)
        elif how == "ipynb":
            nbformat.write(nb, inbox / f"{student}.ipynb")
        else:
            with zipfile.ZipFile(inbox / f"{student}.zip", "w") as zf:
                zf.writestr(f"my_work/{name}", nbformat.writes(nb))

    inbox.mkdir(parents=True, exist_ok=True)
    write("full", full, FULL, "all", how="zip")
    write("untouched", release_nb, 0, "is not written yet", how="ipynb")
    write("partial", answered(release_nb, {t: answers[t] for t in TASKS[:2]}), earned(*TASKS[:2]), "is not written yet")
    raises = {
        **answers,
        TASKS[0]: "def arange_matrix(rows, cols, dtype=torch.float32):\n    raise ValueError('oops')\n",
    }
    write("raises", answered(release_nb, raises), FULL - POINTS[TASKS[0]], "ValueError: oops")
    write(
        "infinite_loop",
        answered(release_nb, {**answers, TASKS[0]: "while True:\n    pass\n"}),
        FULL - POINTS[TASKS[0]],
        "cell time limit",
    )
    # ignores the interrupt sent at the cell time limit, so only the notebook wall-time limit stops it;
    # it sleeps rather than spins so that it holds a worker, not a CPU core, until then
    ignore_sigint = (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.2)\n"
    )
    write(
        "unstoppable_loop",
        answered(release_nb, {**answers, TASKS[2]: ignore_sigint}),
        earned(*TASKS[:2]),
        "wall-time limit",
    )
    crash = {**{t: answers[t] for t in TASKS[:2]}, TASKS[2]: "import os\nos._exit(1)\n"}
    write("kernel_crash", answered(release_nb, crash), earned(*TASKS[:2]), "kernel died")
    # it hits the memory limit, then lets go: a kernel left a few MiB under its limit fails later cells or
    # not by chance (an allocation here or there), and the sample must earn the same points every run
    hog = "chunks = []\ntry:\n    while True:\n        chunks.append(bytearray(2**28))\nfinally:\n    chunks.clear()\n"
    write("memory_hog", answered(release_nb, {**answers, TASKS[1]: hog}), FULL - POINTS[TASKS[1]], "memory limit")
    edited = answered(release_nb, {t: answers[t] for t in TASKS[:2]})
    for task in TASKS[2:]:
        cell_of(edited, task).source = f"print('all tests passed')\nrecord('{task}/fake', 1)\n"
    write("edited_tests", edited, earned(*TASKS[:2]), "is not written yet")
    deleted = copy.deepcopy(full)
    deleted.cells = [c for c in deleted.cells if grade_id(c) != TASKS[0]]
    write("deleted_test", deleted, FULL, "all")
    expected["missing_notebook"] = (0, "was not submitted")
    folder = inbox / "missing_notebook" / "01_tensors_vs_numpy"
    folder.mkdir(parents=True)
    nbformat.write(full, folder / "my_homework.ipynb")
    write(
        "huge_output",
        insert_after(copy.deepcopy(full), TASKS[0], "for i in range(200000):\n    print('x' * 200)\n"),
        FULL,
        "output limit",
    )
    wrong = answered(release_nb, WRONG)
    write("redefined_checks", insert_after(copy.deepcopy(wrong), f"{TASKS[0]}_answer", PATCH_CHECKS), 0, "not recorded")
    write("patched_torch", insert_after(copy.deepcopy(wrong), f"{TASKS[0]}_answer", PATCH_TORCH), 0, "failed")
    write("spoofed_visible", insert_after(copy.deepcopy(wrong), f"{TASKS[0]}_answer", SPOOF_VISIBLE), 0, "failed")
    write(
        "escape",
        insert_after(copy.deepcopy(full), TASKS[-1], ATTACK_CELL.replace("{root!r}", repr(str(course_root)))),
        FULL,
        "all",
    )
    write("pickled_records", insert_after(copy.deepcopy(full), TASKS[-1], PICKLE_RECORDS), 0, "rejected")
    linked = LINK_RECORDS.replace(
        "{target!r}",
        repr(str(course_root / "grading" / "references" / "01_tensors_vs_numpy" / "01_tensors_vs_numpy_exercises.pt")),
    )
    write("linked_records", insert_after(copy.deepcopy(wrong), TASKS[-1], linked), 0, "rejected")
    meta = copy.deepcopy(full)
    fake = nbformat.v4.new_code_cell("record('ex01_arange_matrix/two_by_three', 0)")
    fake.metadata["nbgrader"] = dict(cell_of(meta, TASKS[0]).metadata["nbgrader"], points=1000)
    meta.cells.insert(1, fake)
    cell_of(meta, TASKS[1]).metadata["nbgrader"]["points"] = 1000
    write("tampered_metadata", meta, FULL, "all")
    # the holes of the grading-at-scale issue, one scenario each
    xss = insert_after(copy.deepcopy(full), TASKS[-1], XSS_CELL)
    xss.cells.insert(0, nbformat.v4.new_markdown_cell(XSS_MARKDOWN))
    next(c for c in xss.cells if c.source == XSS_CELL).outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/html": "<img src=x onerror=alert(9)>", "application/javascript": "alert(10)"}
        )
    ]
    write("xss", xss, FULL, "all")
    write("display_leak", insert_after(copy.deepcopy(full), f"{TASKS[0]}_answer", DISPLAY_LEAK), FULL, "all")
    write("display_flood", insert_after(copy.deepcopy(full), TASKS[-1], DISPLAY_FLOOD), FULL, "output limit")
    many = copy.deepcopy(full)
    many.cells += [nbformat.v4.new_code_cell("pass") for _ in range(100_000)]
    write("many_cells", many, 0, "cells, over the limit")
    write("disk_fill", insert_after(copy.deepcopy(full), TASKS[-1], DISK_FILL), FULL, "all")
    write(
        "child_cpu",
        insert_after(copy.deepcopy(full), TASKS[2], CHILD_CPU),
        earned(*TASKS[:3]),
        "the kernel was stopped",
    )
    write(
        "child_memory",
        insert_after(copy.deepcopy(full), TASKS[1], CHILD_MEMORY),
        earned(*TASKS[:2]),
        "the kernel was stopped",
    )
    write("planted_modules", full, FULL, "all")
    for module in ("ipykernel_launcher.py", "numpy.py", "IPython.py", "torch.py", "course_utils.py"):
        (inbox / "planted_modules" / "01_tensors_vs_numpy" / module).write_bytes(PLANTED)
    write("deep_records", insert_after(copy.deepcopy(full), TASKS[-1], DEEP_RECORDS), 0, "rejected")
    write("inflated_records", insert_after(copy.deepcopy(full), TASKS[-1], INFLATED_RECORDS), 0, "rejected")
    expected["not_a_notebook"] = (0, "not a valid notebook")
    (inbox / "not_a_notebook.ipynb").write_text(json.dumps({"cells": "rm -rf /", "nbformat": 4}))
    return expected
