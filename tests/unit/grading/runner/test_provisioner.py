"""course_utils.grading.runner.provisioner: a kernel template that dies while starting is reported at once."""

from __future__ import annotations

import sys
import time

import pytest

from course_utils.grading.runner import provisioner
from course_utils.grading.runner.sandbox import JobLimits, SandboxUnavailable


def test_a_template_that_dies_while_starting_is_reported_at_once_with_its_log(monkeypatch):
    dies = "import sys; sys.stderr.write('broken course_utils\\n'); sys.exit(3)"
    monkeypatch.setattr(provisioner, "template_argv", lambda: [sys.executable, "-c", dies])
    started = time.monotonic()
    with pytest.raises(SandboxUnavailable, match="broken course_utils"):
        provisioner.Template(sandboxed=False, limits=JobLimits())
    assert time.monotonic() - started < 20  # not READY_TIMEOUT (180 s)
