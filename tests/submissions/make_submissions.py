"""Sample submissions for the grading tests, built from the current release and solution notebooks.

Built, not stored: the exercise notebooks evolve, and a stored copy would go stale. Each builder takes
the released notebook and the solution answers and returns what a student would hand in. ``SCENARIOS``
maps a student id to (builder, the points its answers earn out of 10, a phrase its comment must hold).

The scenarios target 01_tensors_vs_numpy: five tasks of 2 points, answer cells ``<task>_answer`` and
test cells ``<task>``. ``solved`` works for any exercise (the release with every answer cell taken from
the solution), and ``honest_class`` builds a class of correct and partial answers without any attack
(plain nbgrader grades those correctly too, so both graders must agree on them: the throughput bench).

    >>> build_inbox(release_nb, solution_nb, Path("inbox"), course_root)  # doctest: +SKIP
    >>> solved(release_nb, solution_nb)  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import nbformat

TASKS = ["ex01_arange_matrix", "ex01_numpy_to_float_tensor", "ex01_dataframe_to_tensors",
         "ex01_pairwise_differences", "ex01_join_and_reshape"]
WRONG = {  # plausible wrong answers: right names, wrong values
    "ex01_arange_matrix": "def arange_matrix(rows, cols, dtype=torch.float32):\n    return torch.zeros(rows, cols, dtype=dtype)\n",
    "ex01_numpy_to_float_tensor": "def numpy_to_float_tensor(array):\n    return torch.zeros(array.shape)\n",
    "ex01_dataframe_to_tensors": "def dataframe_to_tensors(frame, target):\n    return torch.zeros(1), torch.zeros(1)\n",
    "ex01_pairwise_differences": "def pairwise_differences(x):\n    return torch.zeros(len(x), len(x))\n",
    "ex01_join_and_reshape": "def join_and_reshape(a, b, cols):\n    return torch.zeros(1)\n",
}


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def solution_answers(solution_nb) -> dict[str, str]:
    return {t: _cell(solution_nb, f"{t}_answer").source for t in TASKS}


def answered(release_nb, answers: dict[str, str]):
    """The release with the given answer cells filled in (the rest untouched)."""
    nb = copy.deepcopy(release_nb)
    for task, source in answers.items():
        _cell(nb, f"{task}_answer").source = source
    return nb


def _without_markers(source: str) -> str:
    return "".join(line for line in source.splitlines(keepends=True)
                   if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


def solved(release_nb, solution_nb):
    """What a student who gets everything right hands in: the release, each answer cell as in the solution."""
    nb = copy.deepcopy(release_nb)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution_nb.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = _without_markers(answers[grade_id])
    return nb


def honest_class(release_nb, solution_nb, n: int) -> list[tuple[str, object, float]]:
    """``n`` honest 01 submissions, (student, notebook, points earned): full, partial and wrong answers mixed.

    Student i answers the first ``i % 6`` tasks right and, when i is odd, the next one with a wrong answer.
    """
    answers = solution_answers(solution_nb)
    students = []
    for i in range(n):
        right = i % (len(TASKS) + 1)
        chosen = {t: answers[t] for t in TASKS[:right]}
        if i % 2 and right < len(TASKS):
            chosen[TASKS[right]] = WRONG[TASKS[right]]
        students.append((f"student{i:03d}", answered(release_nb, chosen), 2.0 * right))
    return students


def insert_after(nb, grade_id, source):
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return nb


ATTACK_CELL = r'''
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
attempt("read_solutions", lambda: open(ROOT + "/solutions/01_tensors_vs_numpy/01_tensors_vs_numpy_exercises.ipynb").read())
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
'''

PATCH_CHECKS = '''
import course_utils.checks as checks
def _quiet(*args, **kwargs):
    return None
for name in ("check_tensor", "check_scalar", "check_grad", "check_module", "record", "compare_records"):
    setattr(checks, name, _quiet)
check_tensor = record = _quiet
'''

PATCH_TORCH = '''
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)
'''

SPOOF_VISIBLE = '''
import re
def _record_expected_instead(lines):
    source = "".join(lines)
    # rewrite visible checks so they record the expected value (which sits in the visible cell) as the answer
    source = re.sub(r"check_tensor\\((.*?),\\s*(torch\\.tensor\\(.*?\\)),", r"check_tensor(\\2, \\2,", source, flags=re.S)
    return source.splitlines(keepends=True)
get_ipython().input_transformers_cleanup.append(_record_expected_instead)
'''

PICKLE_RECORDS = '''
import os, pickle
class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pwned-by-pickle",))
with open(os.environ["COURSE_RECORD_FILE"], "wb") as handle:
    pickle.dump({"ex01_arange_matrix/two_by_three": Payload()}, handle)
'''

LINK_RECORDS = '''
import os
path = os.environ["COURSE_RECORD_FILE"]
if os.path.exists(path):
    os.remove(path)
os.symlink({target!r}, path)
'''


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
    write("full", full, 10, "all", how="zip")
    write("untouched", release_nb, 0, "not recorded", how="ipynb")
    write("partial", answered(release_nb, {t: answers[t] for t in TASKS[:2]}), 4, "not recorded")
    raises = {**answers, TASKS[0]: "def arange_matrix(rows, cols, dtype=torch.float32):\n    raise ValueError('oops')\n"}
    write("raises", answered(release_nb, raises), 8, "not recorded")
    write("infinite_loop", answered(release_nb, {**answers, TASKS[0]: "while True:\n    pass\n"}), 8, "cell time limit")
    # ignores the interrupt sent at the cell time limit, so only the notebook wall-time limit stops it;
    # it sleeps rather than spins so that it holds a worker, not a CPU core, until then
    ignore_sigint = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n"
                     "    time.sleep(0.2)\n")
    write("unstoppable_loop", answered(release_nb, {**answers, TASKS[2]: ignore_sigint}), 4, "wall-time limit")
    crash = {**{t: answers[t] for t in TASKS[:2]}, TASKS[2]: "import os\nos._exit(1)\n"}
    write("kernel_crash", answered(release_nb, crash), 4, "kernel died")
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(2**28))\n"
    write("memory_hog", answered(release_nb, {**answers, TASKS[1]: hog}), 8, "memory limit")
    edited = answered(release_nb, {t: answers[t] for t in TASKS[:2]})
    for task in TASKS[2:]:
        _cell(edited, task).source = f"print('all tests passed')\nrecord('{task}/fake', 1)\n"
    write("edited_tests", edited, 4, "not recorded")
    deleted = copy.deepcopy(full)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != TASKS[0]]
    write("deleted_test", deleted, 10, "all")
    expected["missing_notebook"] = (0, "was not submitted")
    folder = inbox / "missing_notebook" / "01_tensors_vs_numpy"
    folder.mkdir(parents=True)
    nbformat.write(full, folder / "my_homework.ipynb")
    write("huge_output", insert_after(copy.deepcopy(full), TASKS[0], "for i in range(200000):\n    print('x' * 200)\n"),
          10, "output limit")
    wrong = answered(release_nb, WRONG)
    write("redefined_checks", insert_after(copy.deepcopy(wrong), f"{TASKS[0]}_answer", PATCH_CHECKS), 0, "not recorded")
    write("patched_torch", insert_after(copy.deepcopy(wrong), f"{TASKS[0]}_answer", PATCH_TORCH), 0, "failed")
    write("spoofed_visible", insert_after(copy.deepcopy(wrong), f"{TASKS[0]}_answer", SPOOF_VISIBLE), 0, "failed")
    write("escape", insert_after(copy.deepcopy(full), TASKS[-1], ATTACK_CELL.replace("{root!r}", repr(str(course_root)))), 10, "all")
    write("pickled_records", insert_after(copy.deepcopy(full), TASKS[-1], PICKLE_RECORDS), 0, "rejected")
    linked = LINK_RECORDS.replace("{target!r}", repr(str(course_root / "grading" / "references" / "01_tensors_vs_numpy"
                                                      / "01_tensors_vs_numpy_exercises.pt")))
    write("linked_records", insert_after(copy.deepcopy(wrong), TASKS[-1], linked), 0, "rejected")
    meta = copy.deepcopy(full)
    fake = nbformat.v4.new_code_cell("record('ex01_arange_matrix/two_by_three', 0)")
    fake.metadata["nbgrader"] = dict(_cell(meta, TASKS[0]).metadata["nbgrader"], points=1000)
    meta.cells.insert(1, fake)
    _cell(meta, TASKS[1]).metadata["nbgrader"]["points"] = 1000
    write("tampered_metadata", meta, 10, "all")
    expected["not_a_notebook"] = (0, "not a valid notebook")
    (inbox / "not_a_notebook.ipynb").write_text(json.dumps({"cells": "rm -rf /", "nbformat": 4}))
    return expected
