"""Generate the student release exercises/ from the instructor source solutions/ with nbgrader.

    python scripts/release_exercises.py                 # every assignment in solutions/
    python scripts/release_exercises.py 03_autograd     # just one
    python scripts/release_exercises.py --into /tmp/x   # somewhere else (the staleness test uses this)

Uses nbgrader's Python API (NbGraderAPI.generate_assignment) with the repository's nbgrader_config.py,
so the release is exactly what `nbgrader generate_assignment` makes. Never edit exercises/ by hand.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]


def course_config(root: Path = ROOT) -> Config:
    """The course's nbgrader Config, read from <root>/nbgrader_config.py.

        >>> course_config().CourseDirectory.source_directory
        'solutions'
    """
    path = root / "nbgrader_config.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run this from a checkout of the course repository.")
    return PyFileConfigLoader(path.name, path=str(root)).load_config()


def assignments(root: Path = ROOT) -> list[str]:
    """Assignment names: the folders of solutions/, e.g. ['01_tensors_vs_numpy', ...]."""
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and p.name[:2].isdigit())


def _put_venv_on_path() -> None:
    """nbgrader migrates a new gradebook by running the `alembic` command: make the venv's copy findable."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def generate(names: list[str] | None = None, into: Path | None = None, root: Path = ROOT) -> Path:
    """Run nbgrader generate_assignment for ``names`` and return the release folder it wrote.

    With ``into``, the release goes to that folder (its gradebook to a throwaway database) and the
    repository's exercises/ and gradebook are left alone.
    """
    from nbgrader.apps import NbGraderAPI

    _put_venv_on_path()
    config = course_config(root)
    scratch = None
    if into is not None:
        scratch = Path(tempfile.mkdtemp(prefix="nbgrader-release-"))
        config.CourseDirectory.release_directory = str(Path(into).resolve())
        config.CourseDirectory.db_url = f"sqlite:///{scratch / 'gradebook.db'}"
    else:
        (root / "grading").mkdir(exist_ok=True)
    config.GenerateAssignment.force = True
    config.GenerateAssignment.create_assignment = True
    api = NbGraderAPI(config=config)
    try:
        for name in names or assignments(root):
            result = api.generate_assignment(name, force=True, create=True)
            if not result["success"]:
                raise RuntimeError(f"nbgrader could not generate {name}:\n{result['error']}\n{result['log']}")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return Path(api.coursedir.format_path(api.coursedir.release_directory, ".", "")).resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="assignment names (default: all in solutions/)")
    parser.add_argument("--into", type=Path, help="write the release here instead of exercises/")
    args = parser.parse_args(argv)
    out = generate(args.assignments or None, args.into)
    print(f"released {', '.join(args.assignments) or 'all assignments'} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
