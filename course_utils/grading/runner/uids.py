"""Throw-away uids for jailed kernels, leased machine-wide so that no two live kernels ever share one.

    >>> with lease_uid() as uid:   # doctest: +SKIP
    ...     run_the_kernel_as(uid)

A uid is leased by holding an exclusive ``flock`` on its lock file (in ``LOCK_DIR``), so every grading
run on the machine (any number of them, any engine) sees the same leases, and a lease ends by itself
when its process dies. Kernels get ``RLIMIT_NPROC`` per uid, so a shared uid would let one student's
processes starve another's kernel; leasing makes that impossible.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

FIRST_UID = 61000
COUNT = 4000
#: one lock file per leased uid, machine-wide (``lease_uid(lock_dir=...)`` for another place, e.g. in tests)
LOCK_DIR = Path("/run/course-grading-uids" if os.access("/run", os.W_OK) else "/tmp/course-grading-uids")


class NoFreeUid(RuntimeError):
    """Every uid of the range is leased by a live kernel."""


@contextlib.contextmanager
def lease_uid(first: int = FIRST_UID, count: int = COUNT, lock_dir: Path | None = None) -> Iterator[int]:
    """Hold a uid no other live kernel on this machine holds, for the duration of the block."""
    folder = Path(lock_dir or LOCK_DIR)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    start = (os.getpid() * 7919) % count  # spread concurrent leasers over the range
    for offset in range(count):
        uid = first + (start + offset) % count
        fd = os.open(folder / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    raise NoFreeUid(f"all {count} grading uids from {first} are in use by live kernels; wait for some to finish.")
