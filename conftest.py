"""pytest at the repository root: the names the docstrings' examples use (``--doctest-modules course_utils``),
hypothesis' ``check`` profile (make check, the fast tier, draws fewer examples per property than make test does),
and how ``pytest -n`` (pytest-xdist) shares the files between its workers."""

from pathlib import Path

import numpy
import pytest
import torch
from hypothesis import settings
from torch import nn

settings.register_profile("check", max_examples=20, deadline=None)

#: modules whose import does something (read a classroom's settings, run the command line): no examples there
collect_ignore = ["course_utils/grading/hub/jupyterhub_config.py", "course_utils/grading/__main__.py"]


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(numpy=numpy, torch=torch, nn=nn, Path=Path)


#: files that start a classroom (accounts, a hub, control groups) or measure one: one worker runs them, in turn
CLASSROOM_FILES = {
    "tests/e2e/test_attack_suite.py",
    "tests/e2e/test_browser_hub.py",
    "tests/e2e/test_class_load.py",
    "tests/e2e/test_hostile_students.py",
}


def pytest_xdist_make_scheduler(config, log):
    """``pytest -n N --dist loadfile`` (make test): a file's tests stay on one worker (a lesson's cells share its
    kernel, a module's tests their fixtures), and the classroom files make one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ClassroomFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "classroom" if path in CLASSROOM_FILES else path

    return ClassroomFilesTogether(config, log)
