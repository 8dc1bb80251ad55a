"""What the browser tests share: Chromium under Playwright, free ports, steps with screenshots on failure.

    >>> with browser() as chromium, Steps("test_x", chromium.new_page()) as steps:   # doctest: +SKIP
    ...     with steps("log in"):
    ...         ...

Each step's screenshot is taken into a scratch folder; when a step fails, the folder is kept as the
test's artefact in ``tests/artefacts/<test>/`` (git-ignored), with the failing step's screenshot last.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

ARTEFACTS = Path(__file__).resolve().parent / "artefacts"
#: Debian's Chromium as root, with the machine's network closed (see the README's test section)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def require_browser() -> str:
    """Chromium's path, or skip the test saying what is missing and how to get it."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed: run make setup")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed: run make browser-tools as root (apt-get install chromium)")
    return path


@contextlib.contextmanager
def browser():
    """A headless Chromium (Debian's) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def free_port(count: int = 1) -> int:
    """A port p such that p .. p+count-1 are free on 127.0.0.1 now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count < 65000 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free ports on 127.0.0.1")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_for_http(url: str, seconds: float, process=None) -> None:
    """Wait until ``url`` answers (any HTTP status), or fail with the server's exit code."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError as error:
            if error.code < 500:  # a 5xx is the proxy answering for a hub that is not up yet
                return
            time.sleep(0.5)
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def wait_for_hub(url: str, seconds: float, process=None) -> None:
    """Wait until JupyterHub answers its API through the proxy (``/hub/api`` says its version); before the hub
    has told the proxy its routes, the proxy answers every path itself (404)."""
    import json
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"JupyterHub exited with status {process.returncode} before it answered {url}")
        try:
            with urllib.request.urlopen(f"{url}/hub/api/", timeout=5) as answer:
                if "version" in json.loads(answer.read() or b"{}"):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"JupyterHub at {url} did not answer within {seconds:.0f} s")


class Steps:
    """Named steps of one test; screenshots of each, kept as artefacts when a step fails."""

    def __init__(self, test_name: str, page):
        self.name, self.page, self.count = test_name, page, 0
        self.scratch = Path(tempfile.mkdtemp(prefix="browser-steps-"))

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    @contextlib.contextmanager
    def __call__(self, step: str):
        self.count += 1
        shot = self.scratch / f"{self.count:02d}-{step.replace(' ', '_')}.png"
        try:
            yield self.page
        except BaseException:
            self._shoot(shot.with_name(shot.stem + "-FAILED.png"))
            target = ARTEFACTS / self.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.scratch, target)
            print(f"screenshots of the steps so far: {target}")
            raise
        self._shoot(shot)

    def _shoot(self, path: Path) -> None:
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(path))


def wait_for_idle_kernel(page, timeout_ms: int = 180_000) -> None:
    """Wait until the current notebook's kernel is connected and idle: the status bar says
    "Python 3 (ipykernel) | Idle" (before that it says "No Kernel | Initializing", and Run All runs nothing)."""
    import re

    page.locator(".jp-StatusBar-TextItem:visible", has_text=re.compile(r"\(ipykernel\) \| Idle$")).first.wait_for(
        timeout=timeout_ms
    )


#: the code cells' prompts, read with textContent (off-screen cells are not rendered: their innerText is '')
_PROMPTS = (
    "[...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]"
    ".map(p => p.textContent)"
)


def run_all(page, timeout_ms: int = 300_000) -> list[str]:
    """Run > Run All Cells (once the kernel is idle) and wait until nothing is queued or running any more;
    return the code cells' prompts ('[3]:' ran, '[ ]:' did not: Run All stops at a cell that fails)."""
    wait_for_idle_kernel(page)
    page.get_by_text("Run", exact=True).first.click()
    page.get_by_text("Run All Cells", exact=True).click()
    page.wait_for_function(f"() => {_PROMPTS}.some(t => t.includes('*'))", timeout=60_000)  # queued
    page.wait_for_function(f"() => !{_PROMPTS}.some(t => t.includes('*'))", timeout=timeout_ms)
    wait_for_idle_kernel(page)
    return page.evaluate(f"() => {_PROMPTS}")


def save(page) -> None:
    """File > Save (Ctrl+S), then wait until the tab no longer shows unsaved changes."""
    page.keyboard.press("Control+s")
    page.wait_for_selector(".jp-mod-current.jp-mod-dirty", state="detached", timeout=60_000)


def open_assignment_list(page) -> None:
    """Nbgrader menu -> Assignment List (the learner's Assignments tab)."""
    page.get_by_text("Nbgrader", exact=True).click()
    page.get_by_text("Assignment List", exact=True).click()
    page.wait_for_selector(
        "#released_assignments_list .list_item, #fetched_assignments_list .list_item", timeout=60_000
    )


def log_in(page, url: str, user: str, password: str) -> None:
    """The hub's login page, then wait for the user's JupyterLab (the server spawns first)."""
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_url("**/lab**", timeout=300_000)


def open_lab(page, url: str, user: str) -> None:
    """The user's JupyterLab on the hub, with a fresh layout, once its file browser lists something."""
    page.goto(f"{url}/user/{user}/lab?reset")
    page.wait_for_selector(".jp-DirListing-item", timeout=120_000)
