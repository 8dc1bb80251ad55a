"""Write a file so that readers see the old version or the new one, never half of either.

    >>> write_atomically("grading/results/alice.json", '{"score": 10}')  # doctest: +SKIP

Every writer in the course that must not leave a torn file behind (record files, caches, results, the
gradebook copy, exports) goes through :func:`replacing`: write a temporary file beside the target, then
``os.replace`` it in one step. A failure removes the temporary file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A fresh temporary path beside ``path``; when the block ends without error it replaces ``path``.

        >>> with replacing("cache.npy", suffix=".npy") as tmp: np.save(tmp, array)  # doctest: +SKIP

    ``suffix`` keeps libraries that add their own extension (``np.save``) writing to the same name.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomically(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; return the path.

    >>> write_atomically("released.key", "abc123")  # doctest: +SKIP
    """
    with replacing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)
