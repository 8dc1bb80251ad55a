"""The course as nbgrader sees it: folders from ``nbgrader_config.py``, assignments, notebooks, limits.

    >>> course = Course.load(".")            # doctest: +SKIP
    >>> course.assignments()                 # doctest: +SKIP
    ['01_tensors_vs_numpy', ...]

Every folder the grader reads or writes is a property here: nbgrader's own (source, submitted,
autograded, feedback) from the config, and the grader's workspace next to them (``references``,
``results``, ``export``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from course_utils.grading.cells import HiddenMarkers
from course_utils.grading.config import Limits
from course_utils.grading.files import digest
from course_utils.grading.runner.sandbox import JobLimits

#: student and assignment ids become folder names: keep them to a safe alphabet
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}")  # the whole id must match (fullmatch)


class CourseError(RuntimeError):
    """The course set-up is not usable (missing config, unknown assignment...)."""


def is_safe_id(name: str) -> bool:
    """True for ids that are plain names (no path separators, no dot-dot, not hidden).

    >>> is_safe_id("alice"), is_safe_id("../bob")
    (True, False)
    """
    return isinstance(name, str) and bool(SAFE_ID.fullmatch(name)) and ".." not in name


_WORKING_FOLDER = threading.RLock()


@contextlib.contextmanager
def working_folder(path):
    """Run the block in ``path`` (nbgrader's apps read the course from the working folder), one block at a
    time: the working folder belongs to the whole process, and the hub's watcher grades in several threads."""
    with _WORKING_FOLDER:
        before = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(before)


def put_venv_tools_on_path() -> None:
    """nbgrader runs the ``alembic`` executable to create a gradebook: find it beside this Python."""
    tools = str(Path(sys.executable).parent)
    if tools not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = tools + os.pathsep + os.environ.get("PATH", "")


@dataclass
class Course:
    root: Path
    config: Config
    coursedir: CourseDirectory
    limits: JobLimits

    @classmethod
    def load(cls, root: str | os.PathLike = ".") -> Course:
        root = Path(root).resolve()
        if not (root / "nbgrader_config.py").is_file():
            raise CourseError(
                f"No nbgrader_config.py in {root}: run the grader from the course root or pass --course PATH."
            )
        put_venv_tools_on_path()
        config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
        config.CourseDirectory.root = str(root)
        coursedir = CourseDirectory(config=config)
        return cls(root, config, coursedir, Limits(config=config).job_limits())

    def setting(self, configurable: str, name: str):
        """A setting of ``course_utils.grading.config`` (``c.<configurable>.<name>`` in nbgrader_config.py)."""
        from course_utils.grading import config

        return getattr(getattr(config, configurable)(config=self.config), name)

    # ------------------------------------------------------------ folders
    def path(self, step: str, student: str = ".", assignment: str = "") -> Path:
        return Path(self.coursedir.format_path(step, student, assignment))

    @property
    def source_dir(self) -> Path:
        return self.root / self.coursedir.source_directory

    @property
    def submitted_dir(self) -> Path:
        return self.root / self.coursedir.submitted_directory

    @property
    def autograded_dir(self) -> Path:
        return self.root / self.coursedir.autograded_directory

    @property
    def feedback_dir(self) -> Path:
        return self.root / self.coursedir.feedback_directory

    @property
    def workspace(self) -> Path:
        """The grader's private folder (references, results, exports), next to autograded/."""
        return self.autograded_dir.parent

    @property
    def references_dir(self) -> Path:
        """The solution notebooks' cached records (``grading.references``)."""
        return self.workspace / "references"

    @property
    def results_dir(self) -> Path:
        """One JSON result per student and assignment (``grading.results``)."""
        return self.workspace / "results"

    @property
    def export_dir(self) -> Path:
        """Where ``export`` writes the grades CSV and histograms by default."""
        return self.workspace / "export"

    @property
    def markers(self) -> HiddenMarkers:
        """The hidden-test markers nbgrader removes from the release (``ClearHiddenTests`` in the config)."""
        return HiddenMarkers.from_config(self.config)

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    @property
    def db_path(self) -> Path:
        if not self.db_url.startswith("sqlite:///"):
            raise CourseError(f"Only sqlite gradebooks are supported, not {self.db_url}.")
        return Path(self.db_url[len("sqlite:///") :])

    # ------------------------------------------------------------ assignments
    def assignments(self) -> list[str]:
        if not self.source_dir.is_dir():
            raise CourseError(f"No source folder {self.source_dir}.")
        return sorted(p.name for p in self.source_dir.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))

    def notebooks(self, assignment: str) -> list[str]:
        """Notebook names (without .ipynb) of ``assignment``'s source."""
        self.check_assignment(assignment)
        return sorted(p.stem for p in (self.source_dir / assignment).glob("*.ipynb"))

    def check_assignment(self, assignment: str) -> None:
        if assignment not in self.assignments():
            raise CourseError(
                f"Unknown assignment {assignment!r}; the course has: {', '.join(self.assignments()) or 'none'}."
            )

    def source_notebook(self, assignment: str, notebook: str) -> Path:
        return self.source_dir / assignment / f"{notebook}.ipynb"

    def submitted_students(self, assignment: str) -> list[str]:
        """Students with a submission folder for ``assignment`` (safe ids only, never a link)."""
        if not self.submitted_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.submitted_dir.iterdir()
            if is_safe_id(p.name) and (p / assignment).is_dir() and not (p / assignment).is_symlink()
        )

    def source_digest(self, assignment: str, *extra: Path) -> str:
        """SHA-256 over the assignment's source folder (names and bytes), and ``extra`` files."""
        return digest(sorted((self.source_dir / assignment).rglob("*")) + list(extra))
