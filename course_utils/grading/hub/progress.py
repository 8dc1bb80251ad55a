"""The progress page of grading on submission: a JupyterHub service at ``/services/progress/``.

    $ python -m course_utils.grading --course /srv/pytorch-foundations/course hub progress --instructor teacher

It shows the watcher's state (``hub.state.load_state``): to the instructor, every student's latest submission
(status, score, any note, newest first), the folders quarantined because they named one student but belonged
to another account, and a form that re-grades an assignment (``hub.state.request_regrade``); to a student,
their own submissions only: queued (and how many are ahead), grading, graded with the score, or held by the
rate limit until a stated time. JupyterHub's OAuth says who asks; only the class's members get in
(``access:services!service=progress``), and only the instructor may re-grade.
"""

from __future__ import annotations

import html
import os
import time

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

from course_utils.grading.course import Course, CourseError
from course_utils.grading.hub.state import load_state, request_regrade

COLUMNS = ("assignment", "student", "status", "score", "submitted", "note")


def _when(seconds) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds)) if seconds else ""


def rows(course: Course, student: str | None = None) -> list[dict]:
    """One row per assignment and student (only ``student``'s when given; quarantined folders only without),
    most recently updated first."""
    out = []
    for key, entry in load_state(course).items():
        first, rest = key.split("/", 1)
        if first == "quarantine":
            if student is not None:
                continue
            assignment, who = f"(quarantined folder {rest})", entry.get("student", "")
        else:
            assignment, who = first, rest
            if student is not None and who != student:
                continue
        score = f"{entry['score']:g} / {entry['max_score']:g}" if "score" in entry else ""
        out.append(
            {
                "assignment": assignment,
                "student": who,
                "status": entry.get("status", ""),
                "score": score,
                "submitted": entry.get("submitted", ""),
                "note": entry.get("message", ""),
                "updated": entry.get("updated", 0),
            }
        )
    return sorted(out, key=lambda r: -r["updated"])


def _table(found: list[dict], columns) -> str:
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in columns) + "</tr>" for r in found)
    return f"<table border='1' cellpadding='4'><tr>{''.join(f'<th>{c}</th>' for c in columns)}</tr>{body}</table>"


def _html(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='5'>"
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def page(course: Course, xsrf: str, notice: str = "") -> str:
    """The instructor's page: every submission, the counts per status, the re-grade form."""
    found = rows(course)
    counts = {}
    for r in found:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no submissions yet"
    options = "".join(f"<option>{html.escape(a)}</option>" for a in course.assignments())
    return _html(
        "Grading progress",
        f"<p id='counts'>{html.escape(summary)}</p>"
        f"<p>{html.escape(notice)}</p><form method='post'>{xsrf}<label>Re-grade every graded submission of "
        f"<select name='assignment'>{options}</select></label> <button type='submit'>Re-grade</button></form>"
        + _table(found, COLUMNS),
    )


def student_page(course: Course, student: str) -> str:
    """A student's page: where each of their submissions is."""
    found = rows(course, student)
    intro = (
        "<p>Your submissions, newest first: queued, grading, graded (fetch the feedback in the Assignments "
        "tab), or held by the rate limit until the time it states.</p>"
        if found
        else "<p>No submission yet: submit an assignment from the Assignments tab.</p>"
    )
    return _html("Your grading", intro + (_table(found, [c for c in COLUMNS if c != "student"]) if found else ""))


class ProgressHandler(HubOAuthenticated, web.RequestHandler):
    """GET: the page (the instructor's, or a student's own); POST: the instructor's re-grade request."""

    def initialize(self, course: Course, instructor: str):
        self.course, self.instructor = course, instructor

    def _is_instructor(self) -> bool:
        return self.current_user["name"] == self.instructor

    @web.authenticated
    def get(self):
        if self._is_instructor():
            self.finish(page(self.course, self.xsrf_form_html()))
        else:
            self.finish(student_page(self.course, self.current_user["name"]))

    @web.authenticated
    def post(self):
        if not self._is_instructor():
            raise web.HTTPError(403, "only the instructor re-grades")
        assignment = self.get_body_argument("assignment", "")
        try:
            request_regrade(self.course, assignment)
            notice = f"Re-grade of {assignment} requested: the watcher picks it up within seconds."
        except CourseError as error:
            notice = str(error)
        self.finish(page(self.course, self.xsrf_form_html(), notice))


def make_app(course: Course, instructor: str) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/progress/")
    return web.Application(
        [
            (prefix, ProgressHandler, {"course": course, "instructor": instructor}),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),
    )


def serve(course: Course, instructor: str) -> None:
    """Serve the page where JupyterHub says (``JUPYTERHUB_SERVICE_URL``) until stopped."""
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8002")
    host, port = url.rsplit(":", 1)
    make_app(course, instructor).listen(int(port.rstrip("/")), host.split("//")[-1])
    ioloop.IOLoop.current().start()
