"""course_utils.grading.lab.server: every formgrader response carries a policy that forbids loads from elsewhere."""

from __future__ import annotations

from types import SimpleNamespace

from tornado.httputil import HTTPHeaders

from course_utils.grading.lab.server import FORMGRADER_CSP, FormgraderPolicy


def test_formgrader_pages_forbid_loads_from_elsewhere_and_other_pages_are_left_alone():
    assert "img-src 'self' data:" in FORMGRADER_CSP and "default-src 'self'" in FORMGRADER_CSP
    for path, expected in (("/user/t/formgrader/submissions/1/", FORMGRADER_CSP), ("/user/t/lab", "frame-ancestors")):
        headers = HTTPHeaders({"Content-Security-Policy": "frame-ancestors 'self'"})
        policy = FormgraderPolicy(SimpleNamespace(path=path), "/user/t/formgrader")
        _, headers, _ = policy.transform_first_chunk(200, headers, b"", True)
        assert headers["Content-Security-Policy"].startswith(expected)
