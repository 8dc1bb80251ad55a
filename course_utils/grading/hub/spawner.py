"""Each student's JupyterLab on the hub: private files, a fair share of the machine, nothing left behind.

``ClassroomSpawner`` is JupyterHub's ``LocalProcessSpawner`` (a server per user, as that user), plus:

* files a student's server creates are private (``umask 077``; homes are ``0700``, ``hub.accounts``);
* every process of a student's server (kernels, terminals, anything started with ``nohup``) lives in the
  student's own control group, held to a memory limit and an equal CPU share (cgroup v1 ``memory``/``cpu``/
  ``pids`` or cgroup v2, whichever the machine has), so no student can take the machine from the others;
* stopping the server ends every one of those processes (a server's children do not outlive it) and removes
  its control group.

Where no cgroup hierarchy is writable (an unprivileged hub, a locked-down container), the limits are skipped
with a warning in the hub's log, and stopping a server still ends every process of the student's account.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import time
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Int, Unicode

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _v1_folders(group: str) -> dict[str, Path]:
    """controller -> the cgroup v1 folder of ``group`` (memory, cpu, pids), for the controllers mounted here."""
    return {
        name: CGROUP_ROOT / name / group
        for name in ("memory", "cpu", "pids")
        if (CGROUP_ROOT / name / "cgroup.procs").is_file()
    }


def _v2_folder(group: str) -> Path | None:
    for root in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        if (root / "cgroup.controllers").is_file() and "memory" in (root / "cgroup.controllers").read_text():
            return root / group
    return None


def _mkdir(folder: Path) -> None:
    """``mkdir -p``, again if the parent group went meanwhile (``hub down`` removes it once it is empty)."""
    for _ in range(2):
        with contextlib.suppress(FileNotFoundError):
            folder.mkdir(parents=True, exist_ok=True)
            return
    folder.mkdir(parents=True, exist_ok=True)


def make_group(group: str, memory_bytes: int, cpu_weight: int, pids: int) -> list[Path]:
    """Create (or update) the control group ``group`` with these limits; return its folders ([] when none can
    be made here)."""
    folders = []
    v1 = _v1_folders(group)
    settings = {
        "memory": {"memory.limit_in_bytes": memory_bytes},
        "cpu": {"cpu.shares": cpu_weight * 1024 // 100},
        "pids": {"pids.max": pids},
    }
    for controller, folder in v1.items():
        try:
            _mkdir(folder)
            for name, value in settings[controller].items():
                (folder / name).write_text(str(value))
            folders.append(folder)
        except OSError:
            continue
    if not folders and (v2 := _v2_folder(group)) is not None:
        try:
            v2.parent.joinpath("cgroup.subtree_control").write_text("+memory +cpu +pids")
            _mkdir(v2)
            (v2 / "memory.max").write_text(str(memory_bytes))
            (v2 / "cpu.weight").write_text(str(cpu_weight))
            (v2 / "pids.max").write_text(str(pids))
            folders.append(v2)
        except OSError:
            pass
    return folders


def group_folders(group: str) -> list[Path]:
    """The folders of the control group ``group`` that exist here (cgroup v1 controllers, or v2)."""
    v1 = [folder for folder in _v1_folders(group).values() if folder.is_dir()]
    v2 = _v2_folder(group)
    return v1 or ([v2] if v2 is not None and v2.is_dir() else [])


def remove_group(folders: list[Path]) -> list[Path]:
    """Remove the (empty) control-group folders ``folders``; return those that could not be removed (a process
    still in them). Their parent stays: another student's server may be starting in it."""
    left = []
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            left.append(folder)
    return left


def join(folders: list[Path], pid: int = 0) -> None:
    """Put process ``pid`` (0: this one) into each of ``folders``."""
    for folder in folders:
        (folder / "cgroup.procs").write_text(str(pid or os.getpid()))


def members(folders: list[Path]) -> set[int]:
    found = set()
    for folder in folders:
        with contextlib.suppress(OSError):
            found |= {int(line) for line in (folder / "cgroup.procs").read_text().split()}
    return found


def end_all(folders: list[Path], uid: int | None, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds, every process in ``folders`` and (when ``uid`` is given)
    every process of that account; return the pids that were signalled."""
    import psutil

    def targets() -> set[int]:
        pids = members(folders)
        if uid is not None:
            pids |= {p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid}
        pids.discard(os.getpid())
        return pids

    signalled = sorted(targets())
    for pid in signalled:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and targets():
        time.sleep(0.1)
    for pid in targets():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return signalled


class ClassroomSpawner(LocalProcessSpawner):
    """LocalProcessSpawner with private files, a control group per student and nothing left after a stop."""

    memory_limit_bytes = Int(4 * 2**30, config=True, help="Memory of all a student's processes together.")
    cpu_weight = Int(100, config=True, help="CPU share of a student under contention (all students equal).")
    pids_limit = Int(1024, config=True, help="Processes and threads of a student's server together.")
    cgroup_prefix = Unicode("pytorch-foundations", config=True, help="The control groups' parent folder.")

    def _group(self) -> str:
        return f"{self.cgroup_prefix}/{self.user.name}"

    def make_preexec_fn(self, name):
        """Before the server drops to the student's account (still root, in the child): join the student's
        control group and make new files private."""
        drop_privileges = super().make_preexec_fn(name)
        folders = make_group(self._group(), self.memory_limit_bytes, self.cpu_weight, self.pids_limit)
        if not folders:
            self.log.warning("no cgroup for %s: memory and CPU are not limited per student on this machine", name)

        def preexec():
            join(folders)
            os.umask(0o077)
            drop_privileges()

        return preexec

    async def stop(self, now=False):
        await super().stop(now=now)
        try:
            uid = pwd.getpwnam(self.user.name).pw_uid
        except KeyError:
            uid = None
        folders = group_folders(self._group())
        left = end_all(folders, uid)
        if left:
            self.log.info("stopped %d leftover process(es) of %s", len(left), self.user.name)
        if remove_group(folders):
            self.log.warning("the control group of %s could not be removed: a process is still in it", self.user.name)
