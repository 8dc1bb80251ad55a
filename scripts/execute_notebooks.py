"""Re-execute lesson notebooks in place, top to bottom, and print how long each took.

    $ .venv/bin/python scripts/execute_notebooks.py notebooks/01_tensors_vs_numpy.ipynb

Each notebook runs in a fresh ``python3`` kernel (the interpreter running this script, so run
it from the course venv) with its own folder as the working directory, so the stored outputs
come from one clean run: execution counts 1..n, nothing left over from an earlier session.
A notebook that fails is left untouched on disk and the script exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600


def execute_notebook(path: Path) -> float:
    """Run the notebook at ``path`` in place; return the seconds it took.

    >>> execute_notebook(Path("notebooks/01_tensors_vs_numpy.ipynb"))  # doctest: +SKIP
    3.2
    """
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL_NAME,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    nbformat.write(notebook, path)
    return seconds


def _existing_notebooks(names: list[str]) -> list[Path]:
    paths = [Path(name) for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(
            f"error: no such notebook: {', '.join(missing)}. Pass paths to .ipynb files, e.g. notebooks/*.ipynb"
        )
    wrong = [str(p) for p in paths if p.suffix != ".ipynb"]
    if wrong:
        raise SystemExit(f"error: not a notebook (expected .ipynb): {', '.join(wrong)}")
    return paths


def main(argv: list[str] | None = None) -> int:
    """Execute every notebook named on the command line; 0 when all ran cleanly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="paths to .ipynb files, run in the order given")
    args = parser.parse_args(argv)
    total = 0.0
    for path in _existing_notebooks(args.notebooks):
        try:
            seconds = execute_notebook(path)
        except CellExecutionError as error:
            print(f"FAILED {path} (left unchanged on disk):\n{error}", file=sys.stderr)
            return 1
        total += seconds
        print(f"{seconds:7.1f} s  {path}", flush=True)
    print(f"{total:7.1f} s  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
