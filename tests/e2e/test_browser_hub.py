"""The classroom in a real browser: JupyterHub (PAM, local accounts, its proxy), nbgitpuller, the nbgrader
exchange, grading on submission in the sandbox, the formgrader and the progress page. Nothing is mocked.

The class (one student and one instructor, each a throw-away local account with a random password) lives
in a temporary prefix, built by ``classroom.prepare`` as ``make hub`` builds it (the class venv is a clone of
this checkout's venv: seconds, hard links). Its accounts, homes, folders and processes are removed when the
module ends, pass or fail. Screenshots of each step are kept in tests/artefacts/<test>/ when a step fails;
the hub's log (the grader's included) in tests/artefacts/hub/hub.log.
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
from e2e.browser_support import (
    ARTEFACTS,
    Steps,
    browser,
    free_port,
    open_assignment_list,
    require_browser,
    run_all,
    save,
    wait_for_hub,
    wait_for_idle_kernel,
)

from course_utils.grading.authoring.samples import POINTS
from support import REPO

TOTAL = f"{sum(POINTS.values()):g}"  # exercise 01's points

ROOT = REPO
PROXY = ROOT / "course_utils" / "grading" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
ASSIGNMENT = "01_tensors_vs_numpy"
NOTEBOOK = f"{ASSIGNMENT}_exercises"
ANSWER = (
    "def arange_matrix(rows, cols, dtype=torch.float32):\n"
    "    return torch.arange(rows * cols, dtype=dtype).reshape(rows, cols)\n"
)
VIEWPORT = {"width": 1400, "height": 900}

pytestmark = pytest.mark.slow


def _require_parts():
    require_browser()
    if os.geteuid() != 0:
        pytest.skip("the hub creates local accounts and sandboxes grading: run as root")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed: run make sandbox-tools as root")
    if not os.access(PROXY, os.X_OK):
        pytest.skip("configurable-http-proxy is not installed: run make hub-tools")
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("no system Python for the students' servers: apt-get install python3 python3-venv")


@pytest.fixture(scope="module")
def classroom():
    """A running classroom: (Classroom, the hub's URL, {account: password}); torn down afterwards."""
    _require_parts()
    from course_utils.grading.hub.accounts import read_passwords
    from course_utils.grading.hub.classroom import Classroom, down, hub_command, prepare

    tag = secrets.token_hex(3)
    prefix = Path(tempfile.mkdtemp(prefix="classroom-test-"))
    prefix.chmod(0o755)  # every account passes through it to the class's Python and lessons
    room = Classroom(
        prefix,
        [f"pfs{tag}"],
        f"pfi{tag}",
        port=free_port(4),
        homes=prefix / "homes",
        min_interval=0,
        proxy=str(PROXY),
        course_id="pytorch-foundations",
    )
    hub = None
    try:
        prepare(room)
        cmd, env = hub_command(room)
        log = open(prefix / "hub" / "hub.log", "w")
        hub = subprocess.Popen(
            cmd,
            env={**env, "OMP_WAIT_POLICY": "PASSIVE"},
            cwd=prefix / "hub",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{room.port}"
        wait_for_hub(url, 180, hub)
        yield room, url, read_passwords(room.passwords)
    finally:
        if hub is not None:
            os.killpg(hub.pid, signal.SIGTERM)  # the hub stops its services and the users' servers
            try:
                hub.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
                hub.wait(30)
        if (prefix / "hub" / "hub.log").is_file():
            (ARTEFACTS / "hub").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(prefix / "hub" / "hub.log", ARTEFACTS / "hub" / "hub.log")
        down(prefix, remove_accounts=True, purge_homes=True, purge=True)  # processes, accounts, homes, the prefix


def log_in(page, url, user, password):
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url("**/lab**", timeout=300_000)  # the server spawns, then JupyterLab loads


def open_lab(page, url, user):
    page.goto(f"{url}/user/{user}/lab?reset")
    page.wait_for_selector(".jp-DirListing-item", timeout=120_000)


def test_a_student_gets_the_lessons_fetches_answers_submits_and_reads_the_feedback_and_score(classroom):
    room, url, passwords = classroom
    student = room.students[0]
    home = room.homes / student
    with browser() as chromium, Steps("hub_student", chromium.new_page(viewport=VIEWPORT)) as steps:
        with steps("log in and get the lessons") as page:
            log_in(page, url, student, passwords[student])
            assert "/lab/tree/pytorch-foundations/notebooks" in page.url  # nbgitpuller's redirect
            page.wait_for_selector(".jp-DirListing-item:has-text('01_tensors_vs_numpy')", timeout=60_000)
            assert (home / "pytorch-foundations" / "notebooks" / "01_tensors_vs_numpy.ipynb").is_file()
            assert not (home / "pytorch-foundations" / "solutions").exists()
        with steps("fetch the assignment") as page:
            open_lab(page, url, student)
            open_assignment_list(page)
            page.locator("#released_assignments_list .list_item", has_text=ASSIGNMENT).get_by_role(
                "button", name="Fetch"
            ).click()
            page.wait_for_selector(f"#fetched_assignments_list .list_item:has-text('{ASSIGNMENT}')", timeout=60_000)
            assert (home / ASSIGNMENT / f"{NOTEBOOK}.ipynb").is_file()
        with steps("answer task 1, see its check pass, save") as page:
            page.goto(f"{url}/user/{student}/lab/tree/{ASSIGNMENT}/{NOTEBOOK}.ipynb?reset")
            page.wait_for_selector(".jp-CodeCell .cm-content", timeout=60_000)
            wait_for_idle_kernel(page)
            page.locator(".jp-CodeCell", has_text="raise NotImplementedError").first.locator(".cm-content").click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(ANSWER)
            run_all(page)
            check = page.locator(".jp-CodeCell", has_text="check_tensor(arange_matrix").first
            assert "passed" in check.locator(".jp-OutputArea").text_content()
            save(page)
        with steps("submit") as page:
            open_lab(page, url, student)
            open_assignment_list(page)
            page.locator("#fetched_assignments_list .list_item", has_text=ASSIGNMENT).get_by_role(
                "button", name="Submit"
            ).click()
            page.wait_for_selector(f"#submitted_assignments_list .list_item:has-text('{ASSIGNMENT}')", timeout=60_000)
        with steps("the feedback becomes available") as page:
            available = page.locator("#submitted_assignments_list", has_text="feedback available to fetch")
            for _ in range(90):  # the grader releases it within seconds; the list shows it on refresh
                page.click("#refresh_assignments_list")
                page.wait_for_selector(
                    f"#submitted_assignments_list .list_item:has-text('{ASSIGNMENT}')", timeout=60_000
                )
                if available.count():
                    break
                page.wait_for_timeout(2000)
            assert available.count(), "no feedback within three minutes (see tests/artefacts/hub/hub.log)"
        with steps("fetch the feedback and open it") as page:
            page.locator("#submitted_assignments_list").get_by_role("button", name="Fetch Feedback").first.click()
            link = page.locator("#submitted_assignments_list a", has_text="view feedback")
            link.wait_for(timeout=60_000)
            link.click()  # the file browser goes to the feedback folder
            page.wait_for_selector(f".jp-DirListing-item:has-text('{NOTEBOOK}.html')", timeout=60_000)
        with steps("read the score in the feedback") as page:
            (feedback,) = (home / ASSIGNMENT / "feedback").rglob(f"{NOTEBOOK}.html")
            page.goto(f"{url}/user/{student}/files/{feedback.relative_to(home)}")
            text = page.locator("body").text_content()
            assert re.search(rf"\b2 / {TOTAL}\b", text), text[:2000]


def test_the_instructor_sees_the_submission_graded_in_the_formgrader_and_on_the_progress_page(classroom):
    room, url, passwords = classroom
    student = room.students[0]
    with browser() as chromium, Steps("hub_instructor", chromium.new_page(viewport=VIEWPORT)) as steps:
        with steps("log in") as page:
            log_in(page, url, room.instructor, passwords[room.instructor])
        with steps("the formgrader lists the submission graded") as page:
            page.goto(f"{url}/user/{room.instructor}/formgrader/manage_submissions/{ASSIGNMENT}")
            row = page.locator("tr", has_text=student)
            row.wait_for(timeout=60_000)
            text = row.inner_text()  # visible: cells separated by tabs
            assert "graded" in text and "needs autograding" not in text, text
            assert re.search(rf"\b2(\.0)? / {TOTAL}(\.0)?\b", text), text
        with steps("the progress page shows it graded") as page:
            page.goto(f"{url}/services/progress/")
            row = page.locator("tr", has_text=student)
            row.wait_for(timeout=60_000)
            assert "graded" in row.text_content() and f"2 / {TOTAL}" in row.text_content(), row.text_content()
