"""The instructor's progress page for grading on submission: a JupyterHub service at ``/services/progress/``.

    $ python -m course_utils.grading --course /srv/pytorch-foundations/course hub progress   # run by the hub

It shows the watcher's state (``hub.state.load_state``: each student's latest submission, its status,
score and any note, newest first) and re-grades an assignment on request (``hub.state.request_regrade``).
Only users granted ``access:services!service=progress`` (the instructor) get in: JupyterHub's OAuth.
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


def rows(course: Course) -> list[dict]:
    """One row per assignment and student, most recently updated first."""
    out = []
    for key, entry in load_state(course).items():
        assignment, student = key.split("/", 1)
        score = f"{entry['score']:g} / {entry['max_score']:g}" if "score" in entry else ""
        out.append({"assignment": assignment, "student": student, "status": entry.get("status", ""),
                    "score": score, "submitted": entry.get("submitted", ""), "note": entry.get("message", ""),
                    "updated": entry.get("updated", 0)})
    return sorted(out, key=lambda r: -r["updated"])


def page(course: Course, xsrf: str, notice: str = "") -> str:
    """The progress page's HTML."""
    table = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in COLUMNS) + "</tr>"
                    for r in rows(course))
    counts = {}
    for r in rows(course):
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    options = "".join(f"<option>{html.escape(a)}</option>" for a in course.assignments())
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='5'>"
            f"<title>Grading progress</title></head><body><h1>Grading progress</h1>"
            f"<p id='counts'>{html.escape(', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'no submissions yet')}</p>"
            f"<p>{html.escape(notice)}</p><form method='post'>{xsrf}<label>Re-grade every graded submission of "
            f"<select name='assignment'>{options}</select></label> <button type='submit'>Re-grade</button></form>"
            f"<table border='1' cellpadding='4'><tr>{''.join(f'<th>{c}</th>' for c in COLUMNS)}</tr>{table}</table>"
            "</body></html>")


class ProgressHandler(HubOAuthenticated, web.RequestHandler):
    """GET: the page; POST: a re-grade request for one assignment."""

    def initialize(self, course: Course):
        self.course = course

    @web.authenticated
    def get(self):
        self.finish(page(self.course, self.xsrf_form_html()))

    @web.authenticated
    def post(self):
        assignment = self.get_body_argument("assignment", "")
        try:
            request_regrade(self.course, assignment)
            notice = f"Re-grade of {assignment} requested: the watcher picks it up within seconds."
        except CourseError as error:
            notice = str(error)
        self.finish(page(self.course, self.xsrf_form_html(), notice))


def make_app(course: Course) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/progress/")
    return web.Application([(prefix, ProgressHandler, {"course": course}),
                            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler)],
                           cookie_secret=os.urandom(32))


def serve(course: Course) -> None:
    """Serve the page where JupyterHub says (``JUPYTERHUB_SERVICE_URL``) until stopped."""
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8002")
    host, port = url.rsplit(":", 1)
    make_app(course).listen(int(port.rstrip("/")), host.split("//")[-1])
    ioloop.IOLoop.current().start()
