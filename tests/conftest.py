"""Shared pytest set-up: the tiers (unit, kernel, e2e) and the tiny course fixture.

Notebooks under tests/ are data (sample submissions), never nbval tests. Helpers live in ``support.py``.
"""

from __future__ import annotations

import pytest

from support import make_tiny_course

collect_ignore_glob = ["*.ipynb", "*/*.ipynb", "*/*/*.ipynb", "*/*/*/*.ipynb"]


@pytest.fixture()
def tiny_course(tmp_path):
    """A fresh tiny course (see ``support``) for one test."""
    return make_tiny_course(tmp_path / "course")
