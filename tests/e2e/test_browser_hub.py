"""The classroom in a real browser: JupyterHub (PAM, local accounts, its proxy), nbgitpuller, the nbgrader
exchange, grading on submission in the sandbox, the formgrader and the progress page. Nothing is mocked.

The class (one student and one instructor, each a throw-away local account with a random password) lives
in a temporary prefix (``hub_support.running_classroom``, as ``make hub`` builds it). Its accounts, homes,
folders and processes are removed when the module ends, pass or fail. Screenshots of each step are kept in
tests/artefacts/<test>/ when a step fails; the hub's log (the grader's included) in tests/artefacts/hub/hub.log.
"""

import re

import pytest
from e2e.browser_support import (
    Steps,
    browser,
    log_in,
    open_assignment_list,
    open_lab,
    require_browser,
    run_all,
    save,
    wait_for_idle_kernel,
)
from e2e.hub_support import ASSIGNMENT, NOTEBOOK, running_classroom

from course_utils.grading.authoring.samples import POINTS

TOTAL = f"{sum(POINTS.values()):g}"  # exercise 01's points

ANSWER = (
    "def arange_matrix(rows, cols, dtype=torch.float32):\n"
    "    return torch.arange(rows * cols, dtype=dtype).reshape(rows, cols)\n"
)
VIEWPORT = {"width": 1400, "height": 900}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def classroom():
    """A running classroom: (Classroom, the hub's URL, {account: password}); torn down afterwards."""
    require_browser()
    with running_classroom(["student"], "hub") as hub:
        yield hub.room, hub.url, hub.passwords


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
