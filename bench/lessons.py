"""How long each lesson takes under strict nbval, as ``make test`` runs it (target: all together <= 300 s).

>>> lesson_nbval_seconds(["notebooks/01_tensors_vs_numpy.ipynb"])   # {'seconds': {...}, 'failed': []}
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lesson_nbval_seconds(notebooks=None) -> dict:
    """Seconds of a strict ``pytest --nbval`` run per lesson notebook, the total, and the lessons that failed."""
    paths = (
        sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb")) if notebooks is None else [Path(p) for p in notebooks]
    )
    seconds, failed = {}, []
    for path in paths:
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--nbval",
                str(path),
                "--nbval-current-env",
                "--nbval-sanitize-with",
                str(REPO / "nbval_sanitize.cfg"),
                "-p",
                "no:cacheprovider",
                "-q",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        seconds[path.stem] = time.perf_counter() - started
        if result.returncode != 0:
            failed.append(path.stem)
    seconds["total"] = sum(seconds.values())
    return {"seconds": seconds, "failed": failed}
