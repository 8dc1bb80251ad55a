"""Make an executed notebook safe to show, under a time budget, in a helper process: never on the grader's GIL.

    >>> safe_json = safe_notebook_json(nb_json, seconds=30)   # in a grading worker  # doctest: +SKIP

Rendering markdown (to sanitize it as HTML) takes time that grows faster than the text: a short cell of
nested emphasis takes seconds. So each grading thread keeps one helper process (``python -m
course_utils.grading.pipeline.rendering``, started on first use) that runs ``safe_html.safe_notebook``; the
thread waits at most ``seconds`` for its answer. Past that the helper is killed (the next notebook starts a
new one) and the notebook is made safe here, without rendering anything: markdown becomes escaped text
(``plain_notebook``), linear in its size. The helper reads and answers length-prefixed JSON on its standard
streams; its answer may be no larger than a bound on the question's size.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import struct
import subprocess
import sys
import threading
import time

import nbformat

from course_utils.grading.pipeline.safe_html import escaped_notebook, safe_notebook

HEADER = struct.Struct("!Q")
#: the largest answer taken from the helper, as a multiple of the question (plus a fixed allowance)
GROWTH, ALLOWANCE = 4, 1 << 20


def _frame(data: bytes) -> bytes:
    return HEADER.pack(len(data)) + data


class Renderer:
    """One helper process (see the module docstring), used by one thread at a time."""

    _local = threading.local()
    _all: list = []
    _lock = threading.Lock()

    def __init__(self):
        self.process: subprocess.Popen | None = None

    @classmethod
    def here(cls) -> Renderer:
        """This thread's renderer."""
        renderer = getattr(cls._local, "renderer", None)
        if renderer is None:
            renderer = cls._local.renderer = cls()
            with cls._lock:
                cls._all.append(renderer)
        return renderer

    @classmethod
    def close_all(cls) -> None:
        with cls._lock:
            renderers, cls._all = list(cls._all), []
        for renderer in renderers:
            renderer.close()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "course_utils.grading.pipeline.rendering"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            close_fds=True,
        )

    def call(self, op: str, text: str, seconds: float) -> str | None:
        """The helper's answer to ``op`` on ``text``; None if it took longer than ``seconds`` or failed."""
        question = text.encode()
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        try:
            self.process.stdin.write(_frame(json.dumps({"op": op}).encode()) + _frame(question))
            self.process.stdin.flush()
            answer = self._read(len(question) * GROWTH + ALLOWANCE, time.monotonic() + seconds)
        except (OSError, ValueError, TimeoutError):
            self.close()
            return None
        return answer.decode()

    def _read(self, cap: int, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        header = self._exactly(fd, HEADER.size, deadline)
        (size,) = HEADER.unpack(header)
        if size > cap:
            raise ValueError("the helper's answer is too big")
        return self._exactly(fd, size, deadline)

    def _exactly(self, fd: int, size: int, deadline: float) -> bytes:
        chunks, got = [], 0
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(size - got, 1 << 20))
            if not chunk:
                raise OSError("the helper ended")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                process.wait(5)
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()


atexit.register(Renderer.close_all)


def plain_notebook_json(nb_json: str, why: str) -> str:
    """The notebook made safe without rendering: markdown and HTML as escaped text, with a note saying ``why``."""
    try:
        nb = escaped_notebook(nbformat.reads(nb_json, as_version=4))
    except Exception:  # noqa: BLE001 - not even a notebook nbformat can read: shown as nothing but the note
        nb = nbformat.v4.new_notebook()
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"[grader: this notebook is shown as plain text: {why}]"))
    return nbformat.writes(nb)


def safe_notebook_json(nb_json: str, seconds: float) -> str:
    """``nb_json`` made safe to show (``safe_html.safe_notebook``), in this thread's helper, within ``seconds``."""
    answer = Renderer.here().call("safe", nb_json, seconds)
    if answer is not None:
        return answer
    return plain_notebook_json(nb_json, f"making it safe to show took longer than {seconds:g} s")


def _answer(op: str, text: str) -> str:
    if op == "safe":
        return nbformat.writes(safe_notebook(nbformat.reads(text, as_version=4)))
    raise ValueError(f"unknown request {op[:40]!r}")


def serve() -> None:
    """The helper: answer requests on stdin until it closes (a failed request ends the helper)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30,) * 2)  # a parser gone wild fails here, not the machine
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("500")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        frames = []
        for _ in range(2):
            header = stdin.read(HEADER.size)
            if len(header) < HEADER.size:
                return
            frames.append(stdin.read(HEADER.unpack(header)[0]))
        op = json.loads(frames[0])["op"]
        stdout.write(_frame(_answer(op, frames[1].decode()).encode()))
        stdout.flush()


if __name__ == "__main__":
    serve()
