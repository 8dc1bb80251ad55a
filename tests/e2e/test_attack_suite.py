"""The attack suite end to end (issue 25): a class of hostile submissions and honest bystanders graded by the
command line, the grader in a memory-limited cgroup, then feedback and the formgrader opened in a browser.

Each hostile student attacks one property: the grader's memory (one message of 64 frames of 64 MiB; 6,500
displays and one update copied into all of them; memfd files beyond the kernel's memory), the hidden tests
(a record file whose key is every cell's source), every field rendered (an execution count that is not a
number, in the file handed in and sent by the kernel), the rendering budget (markdown that takes seconds to
render), the instructor's browser (images from elsewhere). The honest students must be graded exactly, the
grader must stay small, and nothing of the hidden tests may reach any feedback.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import nbformat
import pytest

from course_utils.grading.pipeline.results import load_result, result_totals
from course_utils.grading.runner.cgroups import _mounts, _own_paths
from support import REPO, make_tiny_course, submit

pytestmark = pytest.mark.slow
RIGHT = "def double(x):\n    return 2 * x\n"
HIDDEN_LINE = 'record("ex_double/hidden", double(torch.arange(3.0)))'
#: the grader's cgroup: its own process, its kernel template and every kernel, together
GRADER_MEMORY = 4 * 2**30
BOMB = (
    "k = get_ipython().kernel\nb = memoryview(bytearray(64 * 2**20))\n"
    "k.session.send(k.iopub_socket, 'display_data', {'data': {'text/plain': 'x'}, 'metadata': {}},\n"
    "               parent=k.get_parent(), buffers=[b] * 64)\nimport time; time.sleep(30)\n" + RIGHT
)
AMPLIFIER = (
    "from IPython.display import display, update_display\n"
    "for i in range(6500):\n    display({'text/plain': 'amp'}, raw=True, display_id='amp')\n"
    "update_display({'text/plain': 'y' * (450 * 1024)}, raw=True, display_id='amp')\n" + RIGHT
)
MEMFD = (
    "import os\nchunk = b'x' * 2**24\nfds = [os.memfd_create(f'hog{i}') for i in range(16)]\n"
    "for fd in fds:\n    for _ in range(15):\n        os.write(fd, chunk)\n" + RIGHT
)
LEAKER = (
    "import os, torch\nsources = []\nip = get_ipython()\n"
    "ip.input_transformers_post.append(lambda lines: (sources.append(''.join(lines)), lines)[1])\n"
    "def save(result):\n"
    "    torch.save({'LEAK:' + '|'.join(sources): {'kind': 'value', 'value': 1, 'params': {}}},\n"
    "               os.environ['COURSE_RECORD_FILE'])\n"
    "ip.events.register('post_run_cell', save)\n" + RIGHT
)
OPT_OUT = (
    "k = get_ipython().kernel\n"
    "_ = k.session.send(k.iopub_socket, 'execute_result', {'data': {'text/plain': 'x'}, 'metadata': {},\n"
    "                   'execution_count': 'x'}, parent=k.get_parent())\n" + RIGHT
)
PATHOLOGICAL = "*a " * 3300 + "x" + " a*" * 3300


class Pixels(http.server.BaseHTTPRequestHandler):
    """A tracking-pixel server: counts every request."""

    hits: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        Pixels.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def memory_limited_cgroup(limit: int):
    """A v1 or v2 memory cgroup under this process's own, limited to ``limit`` bytes; yields its folder."""
    mounts, own = _mounts(), _own_paths()
    name = "memory" if "memory" in mounts else "unified"
    if name not in mounts or name not in own or os.geteuid() != 0:
        pytest.skip("needs a writable memory cgroup (root)")
    folder = mounts[name] / own[name].lstrip("/") / f"attack-suite-{os.getpid()}"
    try:
        folder.mkdir()
        (folder / ("memory.limit_in_bytes" if name == "memory" else "memory.max")).write_text(str(limit))
    except OSError as error:
        pytest.skip(f"cannot make a memory cgroup here: {error}")
    try:
        yield folder
    finally:
        for child in sorted(folder.rglob("*/"), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()


#: the command line, run inside the cgroup; writes the grader process's own peak RSS (KiB) when it ends
IN_CGROUP = """
import os, resource, runpy, sys
cgroup, peak_file = sys.argv[1], sys.argv[2]
open(os.path.join(cgroup, "cgroup.procs"), "w").write(str(os.getpid()))
sys.argv = ["course_utils.grading", *sys.argv[3:]]
try:
    runpy.run_module("course_utils.grading", run_name="__main__")
finally:
    open(peak_file, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "course_utils.grading", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=REPO,
        **kwargs,
    )


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    pixels = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pixels)
    threading.Thread(target=pixels.serve_forever, daemon=True).start()
    pixel = f"http://127.0.0.1:{pixels.server_address[1]}"
    root = tmp_path_factory.mktemp("attack-suite")
    course = make_tiny_course(root / "course")
    with open(course.root / "nbgrader_config.py", "a") as config:
        config.write("\nc.Limits.render_seconds = 5\n")
    for student in ("honest1", "honest2", "honest3"):
        submit(course, student, RIGHT)
    for student, answer in (
        ("bomb", BOMB),
        ("amplifier", AMPLIFIER),
        ("memfd", MEMFD),
        ("leaker", LEAKER),
        ("opt_out", OPT_OUT),
    ):
        submit(course, student, answer)
    folder = submit(course, "markdown", RIGHT)
    nb = nbformat.read(folder / "hw.ipynb", as_version=4)
    nb.cells[1:1] = [nbformat.v4.new_markdown_cell(PATHOLOGICAL) for _ in range(40)]
    nbformat.write(nb, folder / "hw.ipynb")
    folder = submit(
        course,
        "pixel",
        RIGHT + f"from IPython.display import HTML, Markdown, display\n"
        f"display(HTML('<img src=\"{pixel}/html.png\">'))\n"
        f"display(Markdown('![x]({pixel}/md.png)'))\n",
    )
    nb = nbformat.read(folder / "hw.ipynb", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f'<img src="{pixel}/cell.png"> ![y]({pixel}/cellmd.png)'))
    nbformat.write(nb, folder / "hw.ipynb")
    folder = submit(course, "bad_field", RIGHT)
    raw = json.loads((folder / "hw.ipynb").read_text())
    raw["cells"][1]["execution_count"] = "x"
    (folder / "hw.ipynb").write_text(json.dumps(raw))
    peak = root / "peak"
    with memory_limited_cgroup(GRADER_MEMORY) as cgroup:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                IN_CGROUP,
                str(cgroup),
                str(peak),
                "--course",
                str(course.root),
                "autograde",
                "hw",
                "--workers",
                "2",
                "--memory-mb",
                "2048",
            ],
            capture_output=True,
            text=True,
            timeout=3600,
            cwd=REPO,
        )
    feedback = cli("--course", str(course.root), "feedback", "hw")
    yield course, done, int(peak.read_text()) if peak.exists() else None, feedback, pixel
    pixels.shutdown()


def score(course, student) -> float:
    return result_totals(load_result(course, "hw", student))[0]


def notes(course, student) -> str:
    entry = load_result(course, "hw", student)["notebooks"]["hw"]
    return " | ".join(entry["limits_hit"] + [entry["problem"] or ""])


def test_the_class_is_graded_in_a_memory_limited_cgroup_and_the_honest_exactly(graded):
    # before: the 64 x 64 MiB message took the grader to 3.3 GB and, in a 3.5 GiB cgroup, the OOM killer
    # killed it (exit 137, the gradebook empty); memfd pages made the OOM killer choose the grader
    course, done, peak_kib, _, _ = graded
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NOT GRADED" not in done.stdout, done.stdout
    print(f"grader's peak RSS over the attack suite: {peak_kib / 1024:.0f} MiB")
    assert peak_kib < 1536 * 1024, f"the grader's peak RSS was {peak_kib // 1024} MiB"
    for student in ("honest1", "honest2", "honest3", "markdown", "pixel", "opt_out"):
        assert score(course, student) == 2.0, (student, notes(course, student))
    assert score(course, "leaker") == 0.0 and "malformed: the key of entry 1" in notes(course, "leaker")
    assert "message size limit (32 MiB for one message, all its parts)" in notes(course, "bomb")
    assert "output limit (1024 KiB): later output dropped" in notes(course, "amplifier")
    assert "memory limit (2048 MiB" in notes(course, "memfd")
    assert (
        "is not a valid notebook: a field does not follow the notebook format, at cells/1/execution_count"
        in notes(course, "bad_field")
        and score(course, "bad_field") == 0.0
    )


def test_no_feedback_page_or_result_holds_the_hidden_tests_and_none_stops_the_others(graded):
    # before: the record key's repr put all the hidden-test lines into every comment of the feedback;
    # an execution count "x" made feedback exit 1 with no page for anyone
    course, _, _, feedback, _ = graded
    assert feedback.returncode == 0, feedback.stderr[-3000:]
    pages = {p.parent.parent.name: p.read_text() for p in (course.feedback_dir).rglob("*.html")}
    assert set(pages) >= {"honest1", "leaker", "bad_field", "opt_out", "markdown", "bomb", "memfd"}
    for student, page in pages.items():  # (the leaker's page shows its own code, which names "LEAK:")
        assert "arange(3.0)" not in page and "LEAK:assert" not in page and "LEAK:import" not in page, student
        assert "img-src 'self' data:" in page, student
    for result in (course.results_dir).rglob("*.json"):
        assert "arange(3.0)" not in result.read_text() and "LEAK" not in result.read_text(), result
    assert "not a valid notebook" in pages["bad_field"]


def test_every_autograded_notebook_is_valid_and_slow_markdown_is_shown_as_text(graded):
    # before: 40 cells of nested emphasis cost autograde 270 s on the grader's GIL, feedback 180 s more
    course, _, _, _, _ = graded
    for path in course.autograded_dir.rglob("*.ipynb"):
        nbformat.validate(nbformat.read(path, as_version=4))
    shown = nbformat.read(course.autograded_dir / "markdown" / "hw" / "hw.ipynb", as_version=4)
    assert "shown as plain text" in shown.cells[0].source


def test_no_page_loads_anything_from_elsewhere_in_a_browser(graded, tmp_path):
    # before: nh3 kept <img src="https://...">: an external image loaded when the instructor opened a page
    from e2e.browser_support import browser, free_port

    course, _, _, _, pixel = graded
    page = course.feedback_dir / "pixel" / "hw" / "hw.html"
    assert not re.search(r"""<img[^>]*src\s*=\s*["']?""" + re.escape(pixel), page.read_text())  # text in code only
    port, token = free_port(), "attack-suite-token"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "server",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--ServerApp.root_dir={course.root}",
        ],
        cwd=course.root,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "wb"),
    )
    try:
        from nbgrader.api import Gradebook

        with Gradebook(course.db_url, course_id=course.coursedir.course_id) as gb:
            submission = gb.find_submission_notebook("hw", "hw", "pixel").id
        url = f"http://127.0.0.1:{port}/formgrader/submissions/{submission}/?index=0&token={token}"
        policy = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    policy, body = response.headers["Content-Security-Policy"], response.read().decode()
                break
            except OSError:
                time.sleep(1)
        assert policy and "img-src 'self' data:" in policy and "default-src 'self'" in policy, policy
        assert not re.search(r"""<img[^>]*src\s*=\s*["']?""" + re.escape(pixel), body)
        Pixels.hits.clear()
        with browser() as chromium:
            tab = chromium.new_page()
            tab.goto(page.as_uri())
            tab.goto(url)
            tab.wait_for_timeout(3000)
        assert Pixels.hits == [], Pixels.hits
    finally:
        server.terminate()
        server.wait(30)
