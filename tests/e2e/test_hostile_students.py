"""A hostile student on a real classroom (issue 26): every attempt of the issue, end to end, through the students'
own accounts.

The classroom (``hub_support.running_classroom``: JupyterHub and its proxy, PAM accounts, nbgrader's exchange,
the grader service grading in bubblewrap) has five students: Alice attacks, Bob is her victim, Carol is honest,
Eve's notebooks are slow, Dave uses his JupyterLab server. Students act as their terminal would (``runuser``:
``nbgrader submit``, shell loops in the exchange) or through the hub's REST API with their own token; the
instructor's side runs as the instructor's account, and in Chromium where the UI is the point. The grader's
reads are slowed (``c.Watcher.read_delay``, in the course's ``nbgrader_config.local.py``) so that the window a
swap would need is wide, and its on-submit budget is short (``c.Watcher.notebook_timeout``) so that slow
notebooks end within the test.
"""

from __future__ import annotations

import html
import json
import os
import pwd
import re
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest
from e2e.browser_support import Steps, browser, log_in, require_browser
from e2e.hub_support import ASSIGNMENT, NOTEBOOK, Hub, cgroup_folders, running_classroom, wait_until

from course_utils.grading.authoring.samples import POINTS, honest_class
from support import REPO

pytestmark = pytest.mark.slow

TOTAL = sum(POINTS.values())
READ_DELAY = 1.5  # seconds between the grader choosing a folder and reading it
BUDGET = 30  # the on-submit wall budget per notebook here
MIN_INTERVAL = 5  # the rate limit here
MEMORY_MB = 1536  # each student's server and kernels together
RACE_TRIES = 8  # per kind of swap (the folder, the notebook file)
VIEWPORT = {"width": 1400, "height": 900}

RELEASE = nbformat.read(REPO / "exercises" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
SOLUTION = nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
SAMPLES = {points: nb for _, nb, points in honest_class(RELEASE, SOLUTION, 20)}


def _solution_snippets() -> list[str]:
    """Lines of the solution notebook (answers and hidden tests) that the release does not have, spaces removed."""
    release = "".join(cell.source for cell in RELEASE.cells)
    lines = {line.strip() for cell in SOLUTION.cells for line in cell.source.splitlines()}
    return sorted(
        re.sub(r"\s+", "", line)
        for line in lines
        if len(line) >= 25 and line not in release and "SOLUTION" not in line and "HIDDEN" not in line
    )


SNIPPETS = _solution_snippets()


def solution_code_in(text: str) -> list[str]:
    """The solution's lines found in ``text`` (a notebook's JSON or an HTML page: tags and spaces ignored)."""
    plain = re.sub(r"\s+", "", html.unescape(re.sub(r"<[^>]+>", "", text)))
    plain = plain.replace("\\n", "").replace('\\"', '"')
    return [snippet for snippet in SNIPPETS if snippet in plain]


def with_cells(nb, *sources: str):
    """A copy of ``nb`` with code cells added at its end."""
    out = nbformat.from_dict(json.loads(nbformat.writes(nb)))
    out.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    return out


@pytest.fixture(scope="module")
def hub():
    settings = f"c.Watcher.read_delay = {READ_DELAY}\nc.Watcher.notebook_timeout = {BUDGET}\n"
    with running_classroom(
        ["alice", "bob", "carol", "eve", "dave"],
        "hostile_students",
        min_interval=MIN_INTERVAL,
        course_settings=settings,
        memory_mb=MEMORY_MB,
    ) as hub:
        for role in ("alice", "bob", "carol", "eve"):
            hub.nbgrader(hub.user(role), "fetch_assignment", ASSIGNMENT)
        yield hub


def finished(hub: Hub, user: str, folder: str, seconds: float = 300) -> dict:
    """The grader's entry for ``user`` once it has graded or refused the exchange folder ``folder``."""

    def done():
        entry = hub.entry(user)
        return entry if entry.get("entry") == folder and entry.get("status") in ("graded", "failed") else None

    return wait_until(done, seconds, f"the grader to finish {folder}")


def progress_rows(hub: Hub, user: str) -> list[str]:
    """The rows of the progress page as ``user`` sees it (cells' text, separated by " | ")."""
    answer = hub.request(user, "GET", "/services/progress/")
    assert answer.status_code == 200, (answer.status_code, answer.text[:500])
    rows = re.findall(r"<tr>(.*?)</tr>", answer.text, flags=re.S)[1:]
    return [
        " | ".join(
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td>(.*?)</td>", row, flags=re.S)
        )
        for row in rows
    ]


class StatePoller:
    """Samples the grader's state every 0.2 s in a thread: what the students' progress pages showed, when."""

    def __init__(self, hub: Hub):
        self.hub, self.samples, self._stop = hub, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.time(), self.hub.state()))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def seen(self, key: str) -> list[tuple[float, dict]]:
        return [(when, state[key]) for when, state in self.samples if key in state]


# ---------------------------------------------------------------------------------------------------- privacy


def test_homes_are_private_and_what_a_students_server_creates_is_too(hub):
    alice, bob, dave = hub.user("alice"), hub.user("bob"), hub.user("dave")
    hub.write_as(bob, "notes/answers.txt", "bob's own answers\n")
    for user in [*hub.room.students, hub.room.instructor]:
        assert stat.S_IMODE(hub.home(user).stat().st_mode) == 0o700, user
    listing = hub.run_as(alice, "ls", "-la", str(hub.home(bob)), check=False)
    assert listing.returncode != 0 and "Permission denied" in listing.stderr, listing
    reading = hub.shell(
        alice, f"cat {hub.home(bob)}/notes/answers.txt {hub.home(bob)}/{ASSIGNMENT}/*.ipynb", check=False
    )
    assert reading.returncode != 0 and "bob's own answers" not in reading.stdout and '"cells"' not in reading.stdout

    hub.start_server(dave)  # what his JupyterLab creates: a notebook saved from the editor, a kernel's files
    saved = hub.server_api(
        dave,
        "PUT",
        "/api/contents/saved_in_lab.ipynb",
        json={"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(RELEASE))},
    )
    assert saved.status_code in (200, 201), saved.text
    kernel = hub.start_kernel(dave)
    ran = hub.execute(
        dave,
        kernel,
        "import os, subprocess\nopen('from_kernel.txt', 'w').write('mine')\n"
        "os.mkdir('kernel_folder')\n"
        "subprocess.run('touch from_terminal.txt; mkdir terminal_folder', shell=True)\n"
        "print(oct(os.umask(0o077)))",
    )
    assert ran["status"] == "ok" and ran["stdout"].strip() == "0o77", ran
    for name in ("saved_in_lab.ipynb", "from_kernel.txt", "kernel_folder", "from_terminal.txt", "terminal_folder"):
        mode = stat.S_IMODE((hub.home(dave) / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    hub.server_api(dave, "DELETE", f"/api/kernels/{kernel}")


def test_a_student_reaches_neither_the_course_nor_the_instructors_tools(hub):
    """What the issue found closed already, kept so: the exchange's inbound, the course, its gradebook and
    solutions, the passwords; the hub's admin API, the instructor's server, the formgrader in her own."""
    alice, dave, teacher = hub.user("alice"), hub.user("dave"), hub.room.instructor
    course = hub.room.course
    for path in (hub.inbound, course / "solutions", course / "grading" / "gradebook.db", hub.room.passwords):
        tried = hub.run_as(alice, "bash", "-c", 'ls "$1" && head -c 100 "$1"', "_", str(path), check=False)
        assert tried.returncode != 0 and "Permission denied" in tried.stderr, (path, tried)
    assert hub.request(alice, "GET", "/hub/api/users").status_code == 403
    theirs = hub.request(alice, "GET", f"/user/{teacher}/formgrader")  # (to the hub, when the server is off)
    assert theirs.status_code in (403, 404) and "Manage Assignments" not in theirs.text, (
        theirs.status_code,
        theirs.url,
    )
    hub.start_server(dave)
    assert hub.server_api(dave, "GET", "/formgrader", allow_redirects=False).status_code == 404


# ---------------------------------------------------------------------------------------------------- the race

SWAP_FOLDER = """d="$1"; target="$2"; hide="$3"
while :; do
  mv "$d" "$hide" && ln -s "$target" "$d"; sleep 0.15
  rm -f "$d" && mv "$hide" "$d"; sleep 0.15
done"""
SWAP_FILE = """f="$1/$4"; target="$2/$4"; hide="$3"
while :; do
  mv "$f" "$hide" && ln -s "$target" "$f"; sleep 0.15
  rm -f "$f" && mv "$hide" "$f"; sleep 0.15
done"""
RESTORE = """d="$1"; hide="$3"; f="$1/$4"
if [ -L "$d" ]; then rm -f "$d"; fi
if [ -d "$hide" ] && [ ! -e "$d" ]; then mv "$hide" "$d"; fi
if [ -L "$f" ]; then rm -f "$f"; fi
if [ -f "$hide" ]; then mv "$hide" "$f"; fi"""
NEW_TRY = """src="$1"; dest="$2"; tmp="$(dirname "$2")/.try-$3"
cp -a "$src" "$tmp" && mv "$tmp" "$dest" """


def test_the_solutions_race_run_in_a_loop_never_grades_the_solution(hub):
    """Alice's shell swaps her submission (the folder, or her notebook in it) for a link to the course's solutions
    and back, every 0.15 s, while the grader is about to read it (its read slowed by 1.5 s): each try is a new
    dated folder of hers. Whatever the grader read, it was never the solution, and no feedback she can fetch has
    a line of it."""
    alice = hub.user("alice")
    mark = hub.log.stat().st_size
    first = hub.submit(alice, RELEASE)  # her blank copy: 0 points
    assert finished(hub, alice, first)["score"] == 0
    solutions = hub.room.course / "solutions" / ASSIGNMENT
    outcomes = []
    for number in range(2 * RACE_TRIES):
        kind = "folder" if number % 2 == 0 else "file"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + f".{number:06d} UTC"
        folder = f"{alice}+{ASSIGNMENT}+{stamp}+race{number}"
        args = [str(hub.inbound / folder), str(solutions), str(hub.inbound / f".hidden-{number}"), f"{NOTEBOOK}.ipynb"]
        hub.run_as(alice, "bash", "-c", NEW_TRY, "_", str(hub.inbound / first), str(hub.inbound / folder), str(number))
        loop = hub.run_as(
            alice, "bash", "-c", SWAP_FOLDER if kind == "folder" else SWAP_FILE, "_", *args, background=True
        )
        try:
            entry = finished(hub, alice, folder)
        finally:
            os.killpg(loop.pid, signal.SIGKILL)
            loop.wait(30)
            hub.run_as(alice, "bash", "-c", RESTORE, "_", *args)
        refused = entry["status"] == "failed" and "changed while it was being read" in entry.get("message", "")
        linked = "a link: not copied" in entry.get("message", "")
        outcomes.append((kind, refused or linked, entry.get("score")))
        assert entry.get("score") != TOTAL, entry
        submitted = hub.room.course / "grading" / "submitted" / alice / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        if submitted.is_file():  # not there when the grader found a link in its place
            assert not solution_code_in(submitted.read_text(errors="replace")), f"try {number} ({kind}): {entry}"
    pages = hub.fetch_feedback(alice)
    assert pages and not any(solution_code_in(page) for page in pages)
    for folder in ("submitted", "feedback"):  # (autograded/ has the hidden tests back in: the instructor's view)
        for path in (hub.room.course / "grading" / folder / alice).rglob("*"):
            if path.is_file():
                assert not solution_code_in(path.read_text(errors="replace")), path
    with open(hub.log, "rb") as handle:  # each of her folders graded once: none again while a newer one waited
        handle.seek(mark)
        starts = handle.read().decode(errors="replace").count(f"{ASSIGNMENT}/{alice}: grading")
    assert starts == 1 + len(outcomes), f"{starts} gradings of {1 + len(outcomes)} submissions"
    hits = {kind: sum(hit for k, hit, _ in outcomes if k == kind) for kind in ("folder", "file")}
    print(
        f"\nrace: {len(outcomes)} tries ({RACE_TRIES} folder swaps, {RACE_TRIES} file swaps); in the window: "
        f"{hits['folder']} folder, {hits['file']} file; scores {[score for _, _, score in outcomes]}"
    )
    # the loop must reach the grader's read: file swaps landed in the slowed read in every run measured (3 to 8 of 8);
    # a folder swapped for a link can be seen as one when the exchange is listed (skipped, graded on a later look)
    # rather than inside the read, so its hits are chance (0 to 2 of 8): either way it is never graded as one
    assert hits["file"], f"the loop never hit the window: {outcomes}"


# ---------------------------------------------------------------------------------------------------- forgeries

HAND_MADE = """folder="$1"; notebook="$2"; stamp="$3"
mkdir "$folder" && cp "$notebook" "$folder/" && printf '%s' "$stamp" > "$folder/timestamp.txt"
printf 'forged-secret' > "$folder/submission_secret.txt"
chmod 755 "$folder" """
FORGED = "# FORGED BY ALICE: Bob should get nothing for this\n"


def test_forged_submissions_are_quarantined_shown_to_the_instructor_and_never_collected_as_bobs(hub):
    """Alice submits in Bob's name (``nbgrader submit --student``), hand-makes a dated folder in his name, dated
    later than his (and not opened up with ``chmod 777``: nbgrader's Collect does not need it), and one in her own
    name whose timestamp nbgrader cannot read; and two links, one in Bob's name to her own assignment folder, one
    in hers to Bob's real submission folder. The grader is paused meanwhile, so that the instructor's Collect
    (``nbgrader collect`` in the course folder, then the formgrader's) sees them all: it still collects Bob's
    own submission, and neither forgery; then the grader moves the forgeries to the quarantine, the progress page
    shows them to the instructor, and a re-grade leaves Bob's score as it was."""
    alice, bob, teacher = hub.user("alice"), hub.user("bob"), hub.room.instructor
    points = sorted(SAMPLES)[len(SAMPLES) // 2]
    own = hub.submit(bob, SAMPLES[points])
    before = finished(hub, bob, own)
    assert before["score"] == points

    grader = hub.grader_process()
    grader.suspend()  # SIGSTOP: the forgeries stay in the exchange while the instructor collects
    try:
        by_submit = hub.submit(alice, with_cells(RELEASE, FORGED), ASSIGNMENT, "--student", bob)
        assert by_submit.startswith(f"{bob}+") and hub.inbound.joinpath(by_submit).stat().st_uid == hub.uid(alice)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S.999999 UTC", time.gmtime(time.time() + 60))
        by_hand = f"{bob}+{ASSIGNMENT}+{stamp}+byhand"
        unreadable = f"{alice}+{ASSIGNMENT}+not a time+byhand"
        for name in (by_hand, unreadable):
            hub.run_as(
                alice,
                "bash",
                "-c",
                HAND_MADE,
                "_",
                str(hub.inbound / name),
                str(hub.home(alice) / ASSIGNMENT / f"{NOTEBOOK}.ipynb"),
                stamp,
            )

        # links: one in Bob's name to her own assignment folder, one in hers to Bob's real submission
        later = time.strftime("%Y-%m-%d %H:%M:%S.999999 UTC", time.gmtime(time.time() + 120))
        linked_bob, linked_own = f"{bob}+{ASSIGNMENT}+{later}+link", f"{alice}+{ASSIGNMENT}+{later}+link"
        alice_before = hub.entry(alice)
        hub.run_as(alice, "ln", "-s", str(hub.home(alice) / ASSIGNMENT), str(hub.inbound / linked_bob))
        hub.run_as(alice, "ln", "-s", str(hub.inbound / own), str(hub.inbound / linked_own))

        collected = hub.nbgrader(teacher, "collect", "--update", ASSIGNMENT, cwd=hub.room.course)
        said = collected.stdout + collected.stderr
        for name in (by_submit, by_hand, unreadable, linked_bob, linked_own):
            assert f"{name}: not collected" in said, said
        hub.start_server(teacher)
        answer = hub.server_api(teacher, "POST", f"/formgrader/api/assignment/{ASSIGNMENT}/collect")
        assert answer.status_code == 200 and answer.json().get("success"), answer.text[:2000]
        submitted = hub.room.course / "grading" / "submitted" / bob / ASSIGNMENT
        assert "FORGED BY ALICE" not in (submitted / f"{NOTEBOOK}.ipynb").read_text()
        assert (submitted / "timestamp.txt").read_text().strip() == before["submitted"]
    finally:
        grader.resume()

    forgeries = {by_submit, by_hand, linked_bob}

    def quarantined():
        return {key.split("/", 1)[1] for key in hub.state() if key.startswith("quarantine/")}

    wait_until(lambda: forgeries <= quarantined(), 60, "the forgeries to be quarantined")
    assert not forgeries & set(hub.inbound_entries()), "a quarantined forgery is still in the exchange"
    assert (hub.service_dir / "quarantine" / linked_bob).is_symlink()  # moved as a link, never followed
    assert hub.entry(alice).get("entry") == alice_before.get("entry"), "her link to Bob's folder was graded as hers"
    rows = progress_rows(hub, teacher)
    for name in forgeries:
        assert any(name in row and "quarantined" in row for row in rows), rows
    assert not any("quarantined" in row for row in progress_rows(hub, bob))  # his page: his submissions only

    regrade = hub.request(teacher, "POST", "/services/progress/", data={"assignment": ASSIGNMENT})
    assert regrade.status_code == 200, regrade.text[:500]
    after = wait_until(
        lambda: (e := hub.entry(bob)).get("status") == "graded" and e.get("graded", 0) > before["graded"] and e,
        300,
        "Bob's re-grade",
    )
    assert after["score"] == points and after["entry"] == own
    notebook = (hub.room.course / "grading" / "submitted" / bob / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_text()
    assert "FORGED BY ALICE" not in notebook
    kept = hub.service_dir / "quarantine" / by_submit  # as she made it: the grader changed nothing of hers
    assert {p.lstat().st_uid for p in [kept, *kept.iterdir()]} == {hub.uid(alice)}
    hub.run_as(alice, "rm", "-rf", str(hub.inbound / unreadable), str(hub.inbound / linked_own))


# ---------------------------------------------------------------------------------------------------- fairness

SLEEPS = "import time\ntime.sleep(1000)   # far past the on-submit budget"
#: where a copy of a student's work could lie for others to read (besides the homes, 0700): the grader's spool
#: and scratch folders, shared memory, the classroom's prefix (the class venv left out: root's packages only)
FIND_COPIES = """grep -rlsF -e "$1" --exclude-dir=venv /var/tmp /dev/shm "$2"
find /tmp -maxdepth 2 -type f -readable -exec grep -lsF -e "$1" {} + 2>/dev/null
true"""


def test_a_slow_student_holds_back_neither_another_student_nor_more_than_her_own_next_submission(hub):
    """Eve's notebook sleeps far past the budget; Carol's honest submission is graded while Eve's runs; Eve's second
    submission waits for her first (and her page says so), then is graded; her first is stopped at the budget.
    Meanwhile no copy of Eve's work is anywhere Carol can read."""
    eve, carol = hub.user("eve"), hub.user("carol")
    marker = f"EVE-PRIVATE-{os.urandom(6).hex()}"
    honest = SAMPLES[TOTAL]
    with StatePoller(hub) as poller:
        first = hub.submit(eve, with_cells(honest, f"# {marker}", SLEEPS))
        wait_until(
            lambda: hub.entry(eve).get("entry") == first and hub.entry(eve).get("status") == "grading",
            120,
            "Eve's first submission to be grading",
        )
        copies = hub.run_as(carol, "bash", "-c", FIND_COPIES, "_", marker, str(hub.room.prefix), check=False)
        theirs = hub.submit(carol, honest)
        second = hub.submit(eve, honest)
        eve_rows = wait_until(
            lambda: [
                row for row in progress_rows(hub, eve) if "waits for your other submission" in row or "held" in row
            ],
            60,
            "Eve's page to say her second submission waits",
        )
        carol_done = finished(hub, carol, theirs)
        last = finished(hub, eve, second, seconds=BUDGET + 300)
    assert copies.stdout.strip() == "", f"copies of Eve's work Carol can read: {copies.stdout}"
    assert carol_done["score"] == TOTAL and last["score"] == TOTAL
    eve_key, carol_key = f"{ASSIGNMENT}/{eve}", f"{ASSIGNMENT}/{carol}"
    at_carols = next(
        state
        for when, state in poller.samples
        if state.get(carol_key, {}).get("entry") == theirs and state[carol_key].get("status") == "graded"
    )
    assert "graded" not in at_carols.get(eve_key, {}), "Carol's feedback waited for Eve's slow notebook"
    first_end = next(entry["graded"] for _, entry in poller.seen(eve_key) if "graded" in entry)
    assert last["started"] >= first_end, "Eve's second submission did not wait for her first"
    assert any("waits for your other submission" in entry.get("message", "") for _, entry in poller.seen(eve_key))
    print(f"\nEve's page while her first ran: {eve_rows}")
    pages = hub.fetch_feedback(eve)
    assert any(f"wall-time limit ({BUDGET} s)" in page for page in pages), "her first was not stopped at the budget"


# ---------------------------------------------------------------------------------------------------- disk

HUGE = """folder="$1"; notebook="$2"; stamp="$3"; tmp="$(dirname "$1")/.huge-$$"
mkdir "$tmp" && cp "$notebook" "$tmp/" && printf '%s' "$stamp" > "$tmp/timestamp.txt"
printf 'her-secret' > "$tmp/submission_secret.txt"
truncate -s 3G "$tmp/sparse.bin"                                   # 3 GB apparent, nothing allocated
head -c $((80 * 1024 * 1024)) /dev/urandom > "$tmp/over_size.bin"   # 80 MiB of real data: over the 64 MiB cap
chmod 777 "$tmp" && mv "$tmp" "$folder" """


def _bytes_below(folder: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if not p.is_symlink())


def test_a_sparse_file_and_an_over_size_submission_are_refused_without_being_copied(hub):
    alice = hub.user("alice")
    workspace = hub.room.course / "grading"
    before = _bytes_below(workspace)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S.000001 UTC", time.gmtime())
    folder = f"{alice}+{ASSIGNMENT}+{stamp}+huge"
    hub.write_as(alice, f"{ASSIGNMENT}/{NOTEBOOK}.ipynb", nbformat.writes(RELEASE))
    hub.run_as(
        alice,
        "bash",
        "-c",
        HUGE,
        "_",
        str(hub.inbound / folder),
        str(hub.home(alice) / ASSIGNMENT / f"{NOTEBOOK}.ipynb"),
        stamp,
    )
    entry = finished(hub, alice, folder)
    assert entry["status"] == "graded", entry
    shown = " ".join(progress_rows(hub, alice))  # the note her page shows her
    for name in ("sparse.bin", "over_size.bin"):
        assert f"{name}: over the size limit: not copied" in entry["message"], entry
        assert f"{name}: over the size limit" in shown, shown
        assert not list(workspace.rglob(name)), f"the grader copied {name}"
    grown = _bytes_below(workspace) - before
    assert grown < 16 * 2**20, f"the grading workspace grew by {grown / 2**20:.0f} MiB"


def test_a_file_that_is_not_json_quotes_nothing_of_itself_in_the_feedback(hub):
    """A "notebook" of any other text (with the race closed, the start of a root-readable file would have been)."""
    alice = hub.user("alice")
    secret = f"NOT-JSON-{os.urandom(8).hex()} the first line of some private file"
    hub.write_as(alice, f"{ASSIGNMENT}/{NOTEBOOK}.ipynb", secret + "\n" * 3)
    folder = hub.nbgrader_submit(alice)
    entry = finished(hub, alice, folder)
    assert entry.get("score") == 0
    pages = hub.fetch_feedback(alice)
    shown = [*pages, json.dumps(entry), *progress_rows(hub, alice)]
    quoted = [
        html.unescape(text)[max(0, html.unescape(text).find(secret[:12]) - 200) :][:400]
        for text in shown
        if secret[:12] in html.unescape(text)
    ]
    assert not quoted, quoted


# ---------------------------------------------------------------------------------------------------- sockets


def _listening(table: str) -> list[dict]:
    """Listening sockets of one of /proc/net/tcp, tcp6 (as read by whoever runs this), with their addresses."""
    found = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
            continue
        address, port = fields[1].split(":")
        raw = bytes.fromhex(address)
        if len(raw) == 4:
            host = ".".join(str(b) for b in raw[::-1])
        else:  # four little-endian 32-bit words
            words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
            host = ":".join(b"".join(words)[i : i + 2].hex() for i in range(0, 16, 2))
        found.append({"host": host, "port": int(port, 16), "inode": int(fields[9])})
    return found


def _loopback(host: str) -> bool:
    return (
        host.startswith("127.")
        or host == "0000:0000:0000:0000:0000:0000:0000:0001"
        or host.startswith("0000:0000:0000:0000:0000:ffff:7f")
    )


def _socket_inodes(pids) -> dict[int, int]:
    """socket inode -> pid, for the processes ``pids`` (read as root)."""
    inodes = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes[int(target[8:-1])] = pid
        except OSError:
            continue
    return inodes


def _with_children(pids) -> set[int]:
    import psutil

    out = set()
    for pid in pids:
        try:
            process = psutil.Process(pid)
            out |= {pid, *(child.pid for child in process.children(recursive=True))}
        except psutil.Error:
            continue
    return out


@pytest.fixture()
def during_grading(hub):
    """Bob's notebook grading (it sleeps past the budget) while the test runs."""
    bob = hub.user("bob")
    folder = hub.submit(bob, with_cells(RELEASE, SLEEPS))
    wait_until(
        lambda: hub.entry(bob).get("entry") == folder and hub.entry(bob).get("status") == "grading",
        120,
        "Bob's submission to be grading",
    )
    time.sleep(READ_DELAY + 3)  # past the read: the kernel is running in its jail
    yield folder
    finished(hub, bob, folder, seconds=BUDGET + 300)


def _sockets_seen_by(hub, user: str) -> list[dict]:
    """Every listening TCP socket, as ``user`` reads /proc/net/tcp and tcp6 (what any account can read)."""
    tables = hub.run_as(user, "bash", "-c", "cat /proc/net/tcp; echo ===; cat /proc/net/tcp6").stdout
    v4, v6 = tables.split("===")
    return _listening(v4) + _listening("header\n" + v6.lstrip("\n"))


#: run as a student: for each listening (host, port), what it answers to someone without credentials
PROBE = r"""
import json, socket, ssl, sys

PATHS = ("/", "/api/routes", "/hub/api/users", "/hub/metrics", "/api/contents", "/api/kernels", "/api/terminals",
         "/services/progress/", "/metrics", "/info/main/workers.html", "/json/identity.json", "/health")


def connect(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(3)
    sock.connect((host, port))
    return sock


def get(host, port, path):
    with connect(host, port) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        try:
            while len(data) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    if not data.startswith(b"HTTP/"):
        return {"raw": data[:16].hex()}
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    location = [line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("location:")]
    return {"status": int(lines[0].split()[1]), "location": location[0] if location else "", "body": len(body)}


def http(host, port, path):
    # GET path, following redirects on the same server (never past a login or an OAuth step)
    hops = []
    while True:
        answer = get(host, port, path)
        answer["path"], answer["hops"] = path, hops
        location = answer.get("location", "")
        moved = answer.get("status") in (301, 302, 303, 307, 308) and location.startswith("/")
        if not moved or "login" in location or "oauth" in location or len(hops) >= 6:
            return answer
        hops.append(path)
        path = location


def tls(host, port):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with connect(host, port) as raw, context.wrap_socket(raw) as sock:
            sock.sendall(b"\x00" * 8)
            got = sock.recv(64)
            return "answered: " + got.hex() if got else "closed"
    except (OSError, ssl.SSLError) as error:
        return f"refused: {type(error).__name__}: {error}"


out = {}
for host, port, prefix in json.loads(sys.argv[1]):
    first = http(host, port, prefix + "/")
    if "status" in first:
        out[f"{host} {port}"] = {"kind": "http", "answers": {prefix + p: http(host, port, prefix + p) for p in PATHS}}
    elif first["raw"].startswith("ff"):  # a ZMTP greeting: a kernel's socket
        out[f"{host} {port}"] = {"kind": "zmq", "greeting": first["raw"]}
    else:
        out[f"{host} {port}"] = {"kind": "tls" if first["raw"] == "" or first["raw"].startswith("15") else "other",
                                 "plain": first["raw"], "tls": tls(host, port)}
print(json.dumps(out))
"""


def _connect_host(host: str) -> str:
    return "::1" if ":" in host else host


def _owner_kind(hub, pid: int, grader: set[int]) -> str:
    import psutil

    if pid in grader:
        return "grader"
    process = psutil.Process(pid)
    user, cmdline = process.username(), " ".join(process.cmdline())
    if user in hub.room.students or user == hub.room.instructor:
        role = "student" if user in hub.room.students else "instructor"
        return f"{role} kernel" if "ipykernel" in cmdline else f"{role} server {user}"
    return "hub" if "jupyterhub" in cmdline else ("proxy" if "configurable-http-proxy" in cmdline else cmdline[:80])


def _server_prefix(owner: str) -> str:
    """Where a Jupyter server of a user answers: ``/user/<name>`` ("student server alice-x" -> "/user/alice-x")."""
    return f"/user/{owner.split()[-1]}" if owner.split()[1:2] == ["server"] else ""


def _needs_auth(answer: dict) -> bool:
    """An HTTP answer (redirects followed on the same server) that gives nothing away: it ends at a login or an
    OAuth step, or in 401/403/404/405; or it is the hub's health check (an empty 200, no data)."""
    status, location = answer.get("status"), answer.get("location", "")
    if status in (401, 403, 404, 405):
        return True
    if status in (301, 302, 303, 307, 308) and ("login" in location or "oauth" in location):
        return True
    return answer.get("path") == "/hub/health" and status == 200 and answer.get("body", 0) < 100


def test_every_listening_socket_answers_a_student_only_with_a_login_or_nothing(hub, during_grading):
    """While Bob's notebook is being graded (and Dave's server runs a kernel), Carol lists every listening TCP
    socket (/proc/net/tcp and tcp6, as any account can) and connects to each that belongs to the classroom (the
    hub, its proxy and services, the students' servers and kernels, the grader and all it started; the machine's
    other listeners are not the classroom's). Allowed, exactly: the four hub ports (public proxy, hub API,
    progress page, proxy API), students' servers, all HTTP that asks for a login; kernels' ZeroMQ sockets (every
    message needs the key in the student's private connection file); the grader's TLS sockets, which refuse a
    peer without the course's certificate, and its loopback HTTP servers, which answer 404. Everything on
    loopback; no abstract Unix socket of the grader's (they have no permissions)."""
    from course_utils.grading.hub.classroom import classroom_processes

    carol, dave = hub.user("carol"), hub.user("dave")
    hub.start_server(dave)
    kernel = hub.start_kernel(dave)
    assert hub.execute(dave, kernel, "print(6 * 7)")["stdout"].strip() == "42"
    grader = _with_children([hub.grader_process().pid])
    owners = _socket_inodes(_with_children(classroom_processes(hub.room.prefix)) | grader)
    everything = _sockets_seen_by(hub, carol)
    assert hub.entry(hub.user("bob")) == {**hub.entry(hub.user("bob")), "entry": during_grading, "status": "grading"}
    ours = [s for s in everything if s["inode"] in owners]
    beyond = [s for s in ours if not _loopback(s["host"])]
    assert not beyond, f"the classroom listens beyond loopback: {beyond}"

    port = hub.room.port
    named = {port: "hub public (proxy)", port + 1: "hub API", port + 2: "progress page", port + 3: "proxy API"}
    owner_of = {s["inode"]: named.get(s["port"]) or _owner_kind(hub, owners[s["inode"]], grader) for s in ours}
    # a student's server answers below /user/<name>/ only: ask there (and at the root)
    targets = sorted({(_connect_host(s["host"]), s["port"], _server_prefix(owner_of[s["inode"]])) for s in ours})
    probe = hub.run_as(carol, str(hub.room.venv / "bin" / "python"), "-c", PROBE, json.dumps(targets), timeout=300)
    answers = json.loads(probe.stdout)
    seen, wrong = {}, []
    for s in ours:
        key = f"{_connect_host(s['host'])} {s['port']}"
        owner = owner_of[s["inode"]]
        answer = answers[key]
        seen.setdefault(owner, set()).add(answer["kind"])
        if answer["kind"] == "http":
            leaks = {p: a for p, a in answer["answers"].items() if not _needs_auth(a)}
            allowed_http = owner in named.values() or owner == "grader" or owner.split()[1:2] == ["server"]
            if leaks or not allowed_http:
                wrong.append((owner, key, leaks or answer))
            if owner == "grader" and any(a.get("status") != 404 for a in answer["answers"].values()):
                wrong.append((owner, key, "a grader HTTP server answers something besides 404", answer))
        elif answer["kind"] == "zmq":
            if owner != "student kernel":
                wrong.append((owner, key, answer))
        elif answer["kind"] == "tls":
            if owner != "grader" or not answer["tls"].startswith(("refused", "closed")):
                wrong.append((owner, key, answer))
        else:
            wrong.append((owner, key, answer))
    print(
        f"\nlistening sockets: {len(everything)} on the machine, {len(ours)} the classroom's: "
        + ", ".join(f"{owner}: {sorted(kinds)}" for owner, kinds in sorted(seen.items()))
    )
    assert not wrong, f"sockets that answer a student beyond a login: {wrong}"
    assert {"hub public (proxy)", "hub API", "progress page", "proxy API", f"student server {dave}"} <= set(seen)
    assert seen["hub public (proxy)"] == {"http"} and seen[f"student server {dave}"] == {"http"}, seen
    assert "student kernel" in seen and "grader" in seen, seen
    allowed = {*named.values(), "student kernel", "instructor kernel", "grader"}
    assert all(owner in allowed or owner.split()[1] == "server" for owner in seen), seen
    runtime = hub.shell(dave, "ls ~/.local/share/jupyter/runtime/kernel-*.json | head -1").stdout.strip()
    assert runtime, "Dave's kernel has no connection file"
    stolen = hub.run_as(carol, "cat", runtime, check=False)
    assert stolen.returncode != 0 and "key" not in stolen.stdout, "Carol reads the key of Dave's kernel"

    unix = hub.run_as(carol, "cat", "/proc/net/unix").stdout.splitlines()[1:]
    grader_inodes = _socket_inodes(grader)
    abstract = [
        line.split()[-1]
        for line in unix
        if len(line.split()) >= 8 and line.split()[-1].startswith("@") and int(line.split()[6]) in grader_inodes
    ]
    assert not abstract, f"the grader has abstract Unix sockets any account can connect to: {abstract}"
    hub.server_api(dave, "DELETE", f"/api/kernels/{kernel}")


# ---------------------------------------------------------------------------------------------------- resources


def _oom_kills(user: str) -> int:
    """How many processes the kernel killed in ``user``'s memory control group (cgroup v1 or v2)."""
    for folder in cgroup_folders(user):
        for name in ("memory.oom_control", "memory.events"):
            path = folder / name
            if path.is_file():
                counts = dict(line.split() for line in path.read_text().splitlines() if len(line.split()) == 2)
                if "oom_kill" in counts:
                    return int(counts["oom_kill"])
    return 0


def _group_report(user: str) -> dict:
    """What ``user``'s memory control group holds (v1 or v2): its usage and each process's command line and RSS
    (MiB)."""
    import psutil

    for folder in cgroup_folders(user):
        usage = next((folder / n for n in ("memory.usage_in_bytes", "memory.current") if (folder / n).is_file()), None)
        if usage is None:
            continue
        report = {"usage MiB": int(usage.read_text()) >> 20}
        for pid in map(int, (folder / "cgroup.procs").read_text().split()):
            try:
                process = psutil.Process(pid)
                report[pid] = (" ".join(process.cmdline())[-80:], process.memory_info().rss >> 20)
            except psutil.Error:
                report[pid] = "gone"
        return report
    return {}


def _kernel_log_kills() -> list[str]:
    """The kernel log's last lines about processes the OOM killer chose (empty where the log is not readable)."""
    ran = subprocess.run(["dmesg"], capture_output=True, text=True, check=False)
    return [line for line in ran.stdout.splitlines() if "Killed process" in line][-4:]


def test_a_kernel_past_the_students_memory_limit_dies_and_nothing_else_does(hub):
    dave = hub.user("dave")
    hub.start_server(dave)
    limits = [
        f / name
        for f in cgroup_folders(dave)
        for name in ("memory.limit_in_bytes", "memory.max")
        if (f / name).is_file()
    ]
    assert limits and int(limits[0].read_text()) == MEMORY_MB * 2**20, "no memory limit on Dave's server"
    grader = hub.grader_process().pid
    kills = _oom_kills(dave)
    bystander, hog = hub.start_kernel(dave), hub.start_kernel(dave)
    assert hub.execute(dave, bystander, "kept = 41 + 1\nprint(kept)")["stdout"].strip() == "42"
    before = _group_report(dave)
    ran = hub.execute(dave, hog, f"hog = b'x' * ({2 * MEMORY_MB} * 2**20)\nprint('it survived')", timeout=300)
    assert "it survived" not in ran["stdout"] and ran["status"] != "ok", ran
    assert _oom_kills(dave) > kills, "the memory control group did not stop it"
    after = hub.execute(dave, bystander, "print(kept)")
    assert after["stdout"].strip() == "42", (  # his other kernel, as it was
        after,
        {kernel: hub.kernel_state(dave, kernel) for kernel in (bystander, hog)},
        before,
        _group_report(dave),
        _kernel_log_kills(),
    )
    assert hub.server_api(dave, "GET", "/api/status").status_code == 200  # his server
    assert hub.grader_process().pid == grader and hub.request(dave, "GET", "/hub/api/").status_code == 200
    for kernel in (bystander, hog):
        hub.server_api(dave, "DELETE", f"/api/kernels/{kernel}")


def _processes_of(user: str) -> list[str]:
    import psutil

    uid = pwd.getpwnam(user).pw_uid
    return [
        " ".join(p.info["cmdline"] or [p.info["name"]])
        for p in psutil.process_iter(["uids", "cmdline", "name"])
        if p.info["uids"] and uid in (p.info["uids"].real, p.info["uids"].effective)
    ]


def test_a_stopped_server_leaves_no_process_behind_nohup_or_not(hub):
    dave = hub.user("dave")
    hub.start_server(dave)
    kernel = hub.start_kernel(dave)
    ran = hub.execute(
        dave,
        kernel,
        "import subprocess\n"
        "subprocess.run('nohup sleep 1000 >/dev/null 2>&1 &', shell=True)\n"
        "subprocess.Popen(['sleep', '1001'], start_new_session=True)\n"
        "subprocess.run('(setsid sleep 1002 &) &', shell=True)\nprint('started')",
    )
    assert ran["stdout"].strip() == "started", ran
    wait_until(
        lambda: all(any(f"sleep {n}" in p for p in _processes_of(dave)) for n in (1000, 1001, 1002)),
        30,
        "Dave's background processes to start",
    )
    hub.stop_server(dave)
    wait_until(lambda: not _processes_of(dave), 60, "Dave's processes to end", every=1)
    assert not cgroup_folders(dave), f"control groups left: {cgroup_folders(dave)}"


# ---------------------------------------------------------------------------------------------------- the instructor


def test_the_formgrader_opens_inside_jupyterlab_on_the_hub(hub):
    """Nbgrader -> Formgrader in the instructor's JupyterLab shows the formgrader in its panel (an iframe of the
    same server: JupyterHub's servers refuse to be framed unless the classroom allows its own pages)."""
    require_browser()
    teacher = hub.room.instructor
    with browser() as chromium, Steps("hub_formgrader", chromium.new_page(viewport=VIEWPORT)) as steps:
        with steps("log in") as page:
            log_in(page, hub.url, teacher, hub.passwords[teacher])
        with steps("Nbgrader, Formgrader") as page:
            page.wait_for_selector(".jp-DirListing-item", timeout=120_000)
            page.get_by_text("Nbgrader", exact=True).click()
            page.get_by_text("Formgrader", exact=True).click()
            frame = page.frame_locator("iframe").first
            frame.get_by_text("Manage Assignments").first.wait_for(timeout=120_000)
            frame.get_by_text(ASSIGNMENT).first.wait_for(timeout=60_000)


UNREADABLE = """mkdir "$1" && cp "$2" "$1/" && printf x > "$1/submission_secret.txt"
chmod 000 "$1"/* && chmod 777 "$1" """


def test_the_course_folders_nbgrader_and_make_use_the_classes_exchange_and_python(hub):
    """In the course folder, ``nbgrader list --inbound`` sees the class's submissions (Alice's folder of files only
    she can read does not stop it), and ``make`` runs the class's Python: no second venv."""
    teacher, course = hub.room.instructor, hub.room.course
    alice, carol = hub.user("alice"), hub.user("carol")
    folder = hub.submit(carol, RELEASE)
    private = f"{alice}+{ASSIGNMENT}+{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}.000002 UTC+private"
    hub.run_as(
        alice,
        "bash",
        "-c",
        UNREADABLE,
        "_",
        str(hub.inbound / private),
        str(hub.home(alice) / ASSIGNMENT / f"{NOTEBOOK}.ipynb"),
    )
    listed = hub.nbgrader(teacher, "list", "--inbound", cwd=course)
    said = listed.stdout + listed.stderr
    assert f"{carol} {ASSIGNMENT}" in said and f"{private}: not listed" in said, said
    dry = hub.run_as(teacher, "make", "-n", "export", cwd=course)
    assert f"{hub.room.venv}/bin/python -m course_utils.grading export" in dry.stdout, dry.stdout
    hub.run_as(teacher, "make", "export", cwd=course)
    assert list((course / "grading" / "export").glob("*.csv")) and not (course / ".venv").exists()
    finished(hub, carol, folder)


def test_hub_down_keeps_homes_and_says_so_and_purge_homes_removes_them(hub):
    """``make hub-down`` (last: it stops this module's classroom)."""
    from course_utils.grading.hub.accounts import account_exists
    from course_utils.grading.hub.classroom import classroom_processes

    prefix, people = hub.room.prefix, [*hub.room.students, hub.room.instructor]
    make = ["make", "--no-print-directory", "-C", str(REPO), "hub-down", f"HUB_PREFIX={prefix}"]
    down = subprocess.run(make, capture_output=True, text=True, timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "kept the accounts and their homes" in down.stdout, down.stdout
    hub.process.wait(60)
    assert not classroom_processes(prefix)
    assert all(account_exists(user) for user in people)
    assert (hub.home(hub.user("bob")) / "notes" / "answers.txt").is_file()
    purged = subprocess.run([*make, "HUB_DOWN_ARGS=--purge-homes"], capture_output=True, text=True, timeout=600)
    assert purged.returncode == 0 and "removed the accounts it created and their homes" in purged.stdout, purged
    assert not any(account_exists(user) for user in people)
    assert not any((hub.room.homes / user).exists() for user in people)
    owners = {p.lstat().st_uid for p in [hub.room.course, *hub.room.course.rglob("*")]}
    assert owners == {0}, f"the course is left to uids without an account: {owners - {0}}"
