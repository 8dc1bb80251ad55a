"""The data figures of the foundation issue: load, checksum, competition-layout export and reads.

>>> figures = data_figures()   # {'train_load_s': ..., 'checksum_s': ..., 'export_s': ..., ...}
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from course_utils.competition import export_competition_layout, read_competition_layout
from course_utils.data import FILES, load_fashion_mnist, locate_file, sha256_of


def _seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def data_figures(quick: bool = False) -> dict:
    """Seconds for each data step; ``quick`` exports 2,000 + 500 images instead of 70,000."""
    load_fashion_mnist("train")  # pays the one-off checksum and decode, so the next call is the cached path
    figures = {
        "train_load_s": _seconds(lambda: load_fashion_mnist("train")),
        "checksum_s": _seconds(lambda: sha256_of(locate_file(FILES["train"][0]))),
    }
    n_train, n_test = (2000, 500) if quick else (None, None)
    with tempfile.TemporaryDirectory(prefix="bench-layout-") as tmp:
        folder = Path(tmp) / "apparel"
        figures["export_s"] = _seconds(lambda: export_competition_layout(folder, n_train, n_test))
        figures["first_read_s"] = _seconds(lambda: [read_competition_layout(folder, s) for s in ("train", "test")])
        figures["cached_read_s"] = _seconds(lambda: [read_competition_layout(folder, s) for s in ("train", "test")])
    figures["images_exported"] = 2500 if quick else 70000
    return figures
