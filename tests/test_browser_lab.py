"""``make lab`` in a real browser: a learner runs lesson 01, answers an exercise task, sees its check pass,
presses Validate and reads the per-task summary; the formgrader opens from a fresh copy of the course."""
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from browser_support import Steps, browser, free_port, require_browser, wait_for_http
from course_utils.grading.classroom import course_files

ROOT = Path(__file__).resolve().parents[1]
LESSON = "notebooks/01_tensors_vs_numpy.ipynb"
EXERCISE = "exercises/01_tensors_vs_numpy/01_tensors_vs_numpy_exercises.ipynb"
ANSWER = ("def arange_matrix(rows, cols, dtype=torch.float32):\n"
          "    return torch.arange(rows * cols, dtype=dtype).reshape(rows, cols)\n")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab():
    """``jupyter lab`` as make lab starts it, on a fresh copy of the course; (url, token, root)."""
    require_browser()
    root = Path(tempfile.mkdtemp(prefix="lab-test-"))
    for name in course_files(ROOT):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    token, port = secrets.token_hex(16), free_port()
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--allow-root"]
    server = subprocess.Popen(cmd, cwd=root, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api", 120, server)
        yield f"http://127.0.0.1:{port}", token, root
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def run_all(page):
    page.get_by_text("Run", exact=True).first.click()
    page.get_by_text("Run All Cells", exact=True).click()
    page.wait_for_function("""() => {
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
        return prompts.length > 0 && prompts.every(t => /\\[\\d+\\]/.test(t));
    }""", timeout=300_000)


def test_a_learner_runs_lesson_01_without_errors(lab):
    url, token, _ = lab
    with browser() as chromium, Steps("lab_lesson", chromium.new_page(viewport={"width": 1400, "height": 900})) as steps:
        with steps("open lesson 01") as page:
            page.goto(f"{url}/lab/tree/{LESSON}?token={token}")
            page.wait_for_selector(".jp-CodeCell .cm-content", timeout=120_000)
        with steps("run every cell") as page:
            run_all(page)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                  has_text="Traceback")
            assert errors.count() == 0, errors.first.inner_text()


def test_a_learner_answers_a_task_sees_its_check_pass_and_reads_validates_summary(lab):
    url, token, _ = lab
    with browser() as chromium, Steps("lab_exercise", chromium.new_page(viewport={"width": 1400, "height": 900})) as steps:
        with steps("open exercise 01") as page:
            page.goto(f"{url}/lab/tree/{EXERCISE}?token={token}")
            page.wait_for_selector(".jp-CodeCell .cm-content", timeout=120_000)
        with steps("answer task 1 and run the notebook") as page:
            cell = page.locator(".jp-CodeCell", has_text="raise NotImplementedError").first
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(ANSWER)
            run_all(page)
            check = page.locator(".jp-CodeCell", has_text="check_tensor(arange_matrix").first
            assert "passed" in check.locator(".jp-OutputArea").inner_text()
            page.keyboard.press("Control+S")
            page.wait_for_timeout(1000)
        with steps("validate") as page:
            page.get_by_role("button", name="Validate").first.click()
            dialog = page.locator("#validation-message")
            dialog.wait_for(timeout=300_000)
            text = dialog.inner_text()
            assert "Summary: 1 of 5 tasks pass, 2 / 10 points" in text, text[:2000]
            assert text.index("Summary") < text.index("not answered yet"), text[:2000]


def test_validate_on_a_lesson_says_there_is_nothing_to_grade(lab):
    url, token, _ = lab
    with browser() as chromium, Steps("lab_validate_lesson", chromium.new_page(viewport={"width": 1400, "height": 900})) as steps:
        with steps("validate lesson 01") as page:
            page.goto(f"{url}/lab/tree/{LESSON}?token={token}")
            page.wait_for_selector(".jp-CodeCell .cm-content", timeout=120_000)
            page.get_by_role("button", name="Validate").first.click()
            page.locator("#validation-message").wait_for(timeout=60_000)
            assert "nothing to validate" in page.locator("#validation-message").inner_text()


def test_the_formgrader_opens_from_a_fresh_copy(lab):
    url, token, root = lab
    with browser() as chromium, Steps("lab_formgrader", chromium.new_page(viewport={"width": 1400, "height": 900})) as steps:
        with steps("open the formgrader's assignments") as page:
            page.goto(f"{url}/formgrader?token={token}")
            page.get_by_text("01_tensors_vs_numpy").first.wait_for(timeout=60_000)
            assert (root / "grading" / "exchange").is_dir()
