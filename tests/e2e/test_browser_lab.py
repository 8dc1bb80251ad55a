"""``make lab`` in a real browser: a learner runs lesson 01, answers an exercise task, sees its check pass,
presses Validate and reads the per-task summary; Validate on a lesson says there is nothing to grade; the
formgrader and the learner's Assignment List work from a fresh copy of the course.

One ``jupyter lab`` (started as ``make lab`` starts it, from this checkout's venv) serves a fresh copy of the
course (what git tracks, as a clone has it) in a temporary folder, removed afterwards with the server and
its kernels. Screenshots of each step are kept in tests/artefacts/<test>/ when a step fails; the server's
log is kept in tests/artefacts/lab/server.log.
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from e2e.browser_support import (
    ARTEFACTS,
    Steps,
    browser,
    free_port,
    open_assignment_list,
    require_browser,
    run_all,
    save,
    wait_for_http,
    wait_for_idle_kernel,
)

from course_utils.grading.authoring.samples import POINTS, TASKS
from course_utils.grading.git import tracked_files
from support import REPO

ROOT = REPO
LESSON = "notebooks/01_tensors_vs_numpy.ipynb"
EXERCISE = "exercises/01_tensors_vs_numpy/01_tensors_vs_numpy_exercises.ipynb"
ANSWER = (
    "def arange_matrix(rows, cols, dtype=torch.float32):\n"
    "    return torch.arange(rows * cols, dtype=dtype).reshape(rows, cols)\n"
)
VIEWPORT = {"width": 1400, "height": 900}

pytestmark = pytest.mark.slow


def _without_outputs(path: Path) -> None:
    """Clear a notebook's outputs and execution counts, so that what the test sees afterwards is its own run."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab():
    """``jupyter lab`` as make lab starts it, on a fresh copy of the course; (url, token, root)."""
    require_browser()
    root = Path(tempfile.mkdtemp(prefix="lab-test-"))
    server = None
    try:
        for name in tracked_files(ROOT):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)
        _without_outputs(root / LESSON)
        token, port = secrets.token_hex(16), free_port()
        cmd = [
            str(Path(sys.executable).parent / "jupyter"),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
            "--allow-root",
        ]
        log = open(root / "server.log", "w")
        server = subprocess.Popen(
            cmd,
            cwd=root,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_http(f"http://127.0.0.1:{port}/api", 120, server)
        yield f"http://127.0.0.1:{port}", token, root
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)  # the server shuts its kernels down
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(30)
        if (root / "server.log").is_file():
            (ARTEFACTS / "lab").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / "server.log", ARTEFACTS / "lab" / "server.log")
        shutil.rmtree(root, ignore_errors=True)


def open_notebook(page, url, token, path):
    page.goto(f"{url}/lab/tree/{path}?token={token}&reset")  # reset: not the tabs an earlier test left open
    page.wait_for_selector(".jp-CodeCell .cm-content", timeout=120_000)
    wait_for_idle_kernel(page)


def test_a_learner_runs_lesson_01_without_errors(lab):
    url, token, root = lab
    code = [c for c in nbformat.read(ROOT / LESSON, as_version=4).cells if c.cell_type == "code"]
    # a collapsed cell (a lesson's check, shown as "...") has no prompt; the numbers of the others count it
    shown = [f"[{i}]:" for i, c in enumerate(code, 1) if not c.metadata.get("jupyter", {}).get("source_hidden")]
    with browser() as chromium, Steps("lab_lesson", chromium.new_page(viewport=VIEWPORT)) as steps:
        with steps("open lesson 01") as page:
            open_notebook(page, url, token, LESSON)
        with steps("run every cell") as page:
            prompts = run_all(page)
            assert prompts == shown, prompts  # every cell ran, in order, once
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.first.text_content()
            assert page.locator(".jp-OutputArea-output").count() >= 10  # the lesson printed what it shows
        with steps("save") as page:
            save(page)
            saved = nbformat.read(root / LESSON, as_version=4)
            assert all(c.execution_count for c in saved.cells if c.cell_type == "code")
            assert not [o for c in saved.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def test_a_learner_answers_a_task_sees_its_check_pass_and_reads_validates_summary(lab):
    url, token, root = lab
    with browser() as chromium, Steps("lab_exercise", chromium.new_page(viewport=VIEWPORT)) as steps:
        with steps("open exercise 01") as page:
            open_notebook(page, url, token, EXERCISE)
        with steps("answer task 1") as page:
            cell = page.locator(".jp-CodeCell", has_text="raise NotImplementedError").first
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(ANSWER)
        with steps("run the notebook and see task 1's check pass") as page:
            run_all(page)  # stops at task 2, still unanswered
            check = page.locator(".jp-CodeCell", has_text="check_tensor(arange_matrix").first
            output = check.locator(".jp-OutputArea").text_content()
            assert "passed" in output, output
            unanswered = page.locator(".jp-CodeCell", has_text="numpy_to_float_tensor(np.array").first
            assert "NotImplementedError" in unanswered.locator(".jp-OutputArea").text_content()
            save(page)
        with steps("validate and read the summary") as page:
            page.get_by_role("button", name="Validate").first.click()
            dialog = page.locator("#validation-message")
            dialog.wait_for(timeout=300_000)
            text = dialog.text_content()
            assert f"Summary: 1 of {len(TASKS)} tasks pass, 2 / {sum(POINTS.values()):g} points" in text, text[:2000]
            assert text.index("Summary") < text.index("is not written yet"), text[:2000]
            page.keyboard.press("Escape")


def test_validate_on_a_lesson_says_there_is_nothing_to_grade(lab):
    url, token, _ = lab
    with browser() as chromium, Steps("lab_validate_lesson", chromium.new_page(viewport=VIEWPORT)) as steps:
        with steps("validate lesson 01") as page:
            open_notebook(page, url, token, LESSON)
            page.get_by_role("button", name="Validate").first.click()
            page.locator("#validation-message").wait_for(timeout=60_000)
            assert "nothing to validate" in page.locator("#validation-message").text_content()


def test_the_formgrader_and_the_assignment_list_work_from_a_fresh_copy(lab):
    url, token, root = lab
    with browser() as chromium, Steps("lab_formgrader", chromium.new_page(viewport=VIEWPORT)) as steps:
        with steps("open the formgrader's assignments") as page:
            page.goto(f"{url}/formgrader?token={token}")
            page.locator("td", has_text="01_tensors_vs_numpy").first.wait_for(timeout=60_000)
            assert (root / "grading" / "exchange").is_dir()
            assert "Loading, please wait" not in page.locator("body").text_content()
        with steps("the learner's assignment list offers the released assignments") as page:
            page.goto(f"{url}/lab?token={token}&reset")
            page.wait_for_selector(".jp-DirListing-item", timeout=120_000)
            open_assignment_list(page)
            released = page.locator("#released_assignments_list .list_item", has_text="01_tensors_vs_numpy")
            assert released.count() == 1
            assert "Error fetching courses" not in page.locator("body").text_content()
        with steps("Create Assignment is not offered to learners") as page:
            # nbgrader's authoring panel (id as nbgrader spells it) and its sidebar tab
            assert page.locator("#nbgrader-create_assignemnt").count() == 0
            assert page.locator("[title*='Create Assignment']").count() == 0
            assert page.locator(".lm-TabBar-tab").count() > 0  # the sidebars are there
