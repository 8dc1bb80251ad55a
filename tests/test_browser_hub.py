"""The classroom in a real browser: JupyterHub (PAM, local accounts, the proxy), nbgitpuller, the nbgrader
exchange, grading on submission in the sandbox, the formgrader. Nothing is mocked.

The class (a student and an instructor, each a throw-away local account) lives in a temporary prefix;
its accounts, homes, folders and processes are removed when the module ends, pass or fail.
"""
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from browser_support import ARTEFACTS, Steps, browser, free_port, open_assignment_list, require_browser, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
ASSIGNMENT = "01_tensors_vs_numpy"
ANSWER = ("def arange_matrix(rows, cols, dtype=torch.float32):\n"
          "    return torch.arange(rows * cols, dtype=dtype).reshape(rows, cols)\n")

pytestmark = pytest.mark.slow


def _require_parts():
    require_browser()
    if os.geteuid() != 0:
        pytest.skip("the hub creates local accounts and sandboxes grading: run as root")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed: run make sandbox-tools as root")
    if not os.access(PROXY, os.X_OK):
        pytest.skip("configurable-http-proxy is not installed: run make hub-tools (npm ci in hub/)")
    if not os.access("/usr/bin/python3.11", os.X_OK):
        pytest.skip("no system Python 3.11 for the students' servers: apt-get install python3.11-venv")


@pytest.fixture(scope="module")
def classroom():
    """A running classroom: (Classroom, the hub's URL, {account: password}); torn down afterwards."""
    _require_parts()
    from course_utils.grading.classroom import Classroom, down, hub_command, prepare
    from course_utils.grading.hub import read_passwords
    tag = secrets.token_hex(3)
    prefix = Path(tempfile.mkdtemp(prefix="classroom-test-"))
    prefix.chmod(0o755)   # every account passes through it to the class's Python and lessons
    room = Classroom(prefix, [f"pfs{tag}"], f"pfi{tag}", port=free_port(4), homes=prefix / "homes",
                     min_interval=0, proxy=str(PROXY), course_id="pytorch-foundations")
    hub = None
    try:
        prepare(room)
        cmd, env = hub_command(room)
        log = open(prefix / "hub" / "hub.log", "w")
        hub = subprocess.Popen(cmd, env={**env, "OMP_WAIT_POLICY": "PASSIVE"}, cwd=prefix / "hub",
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{room.port}"
        wait_for_http(f"{url}/hub/login", 120, hub)
        yield room, url, read_passwords(room.passwords)
    finally:
        if hub is not None:
            os.killpg(hub.pid, signal.SIGTERM)
            try:
                hub.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
        if (prefix / "hub" / "hub.log").is_file():   # kept as an artefact: the hub's and the grader's log
            (ARTEFACTS / "hub").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(prefix / "hub" / "hub.log", ARTEFACTS / "hub" / "hub.log")
        down(prefix, purge=True)


def log_in(page, url, user, password):
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")


def answer_first_task(page, code):
    """Replace the first answer cell's code (the one that raises NotImplementedError) with ``code``."""
    cell = page.locator(".jp-CodeCell", has_text="raise NotImplementedError").first
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(code)


def test_a_student_gets_the_lessons_fetches_answers_submits_and_reads_the_feedback_and_score(classroom):
    room, url, passwords = classroom
    student = room.students[0]
    with browser() as chromium, Steps("hub_student", chromium.new_page(viewport={"width": 1400, "height": 900})) as steps:
        with steps("log in and get the lessons") as page:
            log_in(page, url, student, passwords[student])
            page.wait_for_url("**/lab/**", timeout=180_000)
            page.wait_for_selector(".jp-DirListing-item:has-text('01_tensors_vs_numpy')", timeout=60_000)
            assert (room.homes / student / "pytorch-foundations" / "notebooks").is_dir()
        with steps("fetch the assignment") as page:
            open_assignment_list(page)
            page.locator("#released_assignments_list .list_item", has_text=ASSIGNMENT).get_by_role(
                "button", name="Fetch").click()
            page.wait_for_selector(f"#fetched_assignments_list .list_item:has-text('{ASSIGNMENT}')", timeout=60_000)
        with steps("answer a task and save") as page:
            page.goto(f"{url}/user/{student}/lab/tree/{ASSIGNMENT}/{ASSIGNMENT}_exercises.ipynb")
            page.wait_for_selector(".jp-CodeCell .cm-content", timeout=60_000)
            answer_first_task(page, ANSWER)
            page.keyboard.press("Control+S")
            page.wait_for_timeout(1000)
        with steps("submit") as page:
            page.goto(f"{url}/user/{student}/lab")
            open_assignment_list(page)
            page.locator("#fetched_assignments_list .list_item", has_text=ASSIGNMENT).get_by_role(
                "button", name="Submit").click()
            page.wait_for_selector(f"#submitted_assignments_list .list_item:has-text('{ASSIGNMENT}')", timeout=60_000)
        with steps("fetch the feedback as soon as it is there") as page:
            link = page.locator("#submitted_assignments_list a", has_text="view feedback")
            for _ in range(90):
                page.locator("#submitted_assignments_list").get_by_role("button", name="Fetch Feedback").first.click()
                page.wait_for_timeout(2000)
                if link.count():
                    break
            assert link.count(), "no feedback arrived within three minutes (see the hub's log below)"
        with steps("read the score in the feedback") as page:
            feedback = next((room.homes / student / ASSIGNMENT / "feedback").rglob("*.html"))
            page.goto(f"{url}/user/{student}/files/{feedback.relative_to(room.homes / student)}")
            text = page.locator("body").inner_text()
            assert re.search(r"\b2 / 10\b", text), text[:2000]


def test_the_instructor_sees_the_submission_graded_in_the_formgrader_and_on_the_progress_page(classroom):
    room, url, passwords = classroom
    student = room.students[0]
    with browser() as chromium, Steps("hub_instructor", chromium.new_page(viewport={"width": 1400, "height": 900})) as steps:
        with steps("log in") as page:
            log_in(page, url, room.instructor, passwords[room.instructor])
            page.wait_for_url("**/lab**", timeout=180_000)
        with steps("the formgrader lists the graded submission") as page:
            page.goto(f"{url}/user/{room.instructor}/formgrader/manage_submissions/{ASSIGNMENT}")
            row = page.locator("tr", has_text=student)
            row.wait_for(timeout=60_000)
            assert re.search(r"\b2(\.0)? / 10(\.0)?\b", row.inner_text()), row.inner_text()
        with steps("the progress page shows it graded") as page:
            page.goto(f"{url}/services/progress/")
            row = page.locator("tr", has_text=student)
            row.wait_for(timeout=60_000)
            assert "graded" in row.inner_text() and "2 / 10" in row.inner_text()
