"""pytest at the repository root: the names the docstrings' examples use (``--doctest-modules course_utils``), and
hypothesis' ``check`` profile: make check (the fast tier) draws fewer examples per property than make test does."""

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
