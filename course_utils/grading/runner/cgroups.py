"""A cgroup per job: the kernel's memory (in-memory files, memfd and shared memory included), CPU time and tasks,
counted and capped by Linux itself.

    >>> folders = template_cgroups()          # the grader, before it starts a template  # doctest: +SKIP
    >>> bind_args(folders)                    # bwrap's options: the folders appear at /cgroup/<name>  # doctest: +SKIP

The grader makes one folder per kernel template under its own cgroup, in each hierarchy it may write
(cgroup v2's unified one when its memory controller can be delegated there, else v1's ``memory``,
``cpuacct`` and ``pids``), and binds them into the template's jail at ``MOUNT/<name>``. Per job, the
template makes a child folder, sets its limits and moves the job in (``JobCgroup``, inside the jail); the
supervisor reads its usage, and the OOM killer, when a job goes past its memory, picks among that job's
processes only. Under the grader's own cgroup, a memory limit set on the grader's service also bounds its
kernels, and the kernels are the OOM killer's first choice (``oom_score_adj``). Without a writable hierarchy
(grading without root, or cgroups not mounted) nothing is made and the supervisor counts by itself.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MOUNT = "/cgroup"
V1_CONTROLLERS = ("memory", "cpuacct", "pids")
PREFIX = "course-grading-"


def _mounts() -> dict[str, Path]:
    """Where each hierarchy is mounted: ``unified`` (v2) and the v1 controllers by name."""
    found: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        fstype, options = rest[0], rest[2].split(",")
        if fstype == "cgroup2":
            found.setdefault("unified", Path(fields[4]))
        elif fstype == "cgroup":
            for name in V1_CONTROLLERS:
                if name in options:
                    found.setdefault(name, Path(fields[4]))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup in each hierarchy (``/proc/self/cgroup``)."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                own["unified"] = path
            for name in controllers.split(","):
                if name in V1_CONTROLLERS:
                    own[name] = path
    return own


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _unified_folder(mount: Path, own: str, name: str) -> Path | None:
    """A folder under this process's v2 cgroup whose children get the memory, cpu and pids controllers."""
    parent = mount / own.lstrip("/")
    try:
        if "memory" not in (parent / "cgroup.controllers").read_text().split():
            return None
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if "memory" not in enabled:  # refused (EBUSY) when this cgroup holds processes: then no cgroups
            _write(parent / "cgroup.subtree_control", "+memory +pids +cpu")
        folder = parent / name
        folder.mkdir(mode=0o755)
        available = (folder / "cgroup.controllers").read_text().split()
        wanted = [f"+{c}" for c in ("memory", "pids", "cpu") if c in available]
        _write(folder / "cgroup.subtree_control", " ".join(wanted))
        return folder
    except OSError:
        return None


def template_cgroups(tag: str | None = None) -> dict[str, Path]:
    """Make this template's cgroup folders (name -> host folder); empty where none can be made."""
    name = f"{PREFIX}{tag or os.getpid()}"
    remove_stale()
    mounts, own = _mounts(), _own_paths()
    if "unified" in mounts and "unified" in own and not any(c in mounts for c in V1_CONTROLLERS):
        folder = _unified_folder(mounts["unified"], own["unified"], name)
        return {"unified": folder} if folder else {}
    folders: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        if controller not in mounts or controller not in own:
            continue
        folder = mounts[controller] / own[controller].lstrip("/") / name
        try:
            folder.mkdir(mode=0o755)
        except FileExistsError:
            pass
        except OSError:
            continue
        folders[controller] = folder
    if "memory" not in folders:  # the memory controller is the point: without it, count by hand
        remove(folders)
        return {}
    return folders


def bind_args(folders: dict[str, Path]) -> list[str]:
    """bwrap's options that put each folder at ``MOUNT/<name>`` in the jail."""
    args: list[str] = []
    for name, folder in folders.items():
        args += ["--bind", str(folder), f"{MOUNT}/{name}"]
    return args


def remove(folders: dict[str, Path]) -> None:
    """Remove a template's folders and whatever job folders are left in them (their processes are gone)."""
    for folder in folders.values():
        for child in sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True) if folder.is_dir() else []:
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()


def remove_stale() -> None:
    """Remove the folders of templates whose grader is gone (a grader that was killed could not)."""
    mounts, own = _mounts(), _own_paths()
    for name, mount in mounts.items():
        parent = mount / own.get(name, "/").lstrip("/")
        with contextlib.suppress(OSError):
            for folder in parent.glob(f"{PREFIX}*"):
                pid = folder.name[len(PREFIX) :].split("-")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    remove({name: folder})


# ---------------------------------------------------------------- inside the jail (the template and the supervisor)


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _stat(path: str) -> dict[str, int]:
    values = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


class JobCgroup:
    """One job's cgroup folders (inside the jail), made by the template for the job's limits."""

    def __init__(self, job: str, root: str = MOUNT):
        self.folders = {}
        if os.path.isdir(root):
            self.folders = {name: os.path.join(root, name, job) for name in sorted(os.listdir(root))}

    @property
    def active(self) -> bool:
        return "memory" in self.folders or "unified" in self.folders

    def create(self, memory_bytes: int, tasks: int) -> None:
        """Make the folders with their limits (memory, no swap, tasks)."""
        for name, folder in self.folders.items():
            os.mkdir(folder, 0o755)
            if name == "memory":
                _write(Path(folder, "memory.limit_in_bytes"), str(memory_bytes))
                if os.path.exists(os.path.join(folder, "memory.memsw.limit_in_bytes")):
                    with contextlib.suppress(OSError):
                        _write(Path(folder, "memory.memsw.limit_in_bytes"), str(memory_bytes))
            elif name == "pids":
                _write(Path(folder, "pids.max"), str(tasks))
            elif name == "unified":
                _write(Path(folder, "memory.max"), str(memory_bytes))
                for file, value in (("memory.swap.max", "0"), ("pids.max", str(tasks))):
                    if os.path.exists(os.path.join(folder, file)):
                        _write(Path(folder, file), value)

    def enter(self) -> None:
        """Move the calling process (and so all it forks from now on) into the job's folders."""
        for folder in self.folders.values():
            _write(Path(folder, "cgroup.procs"), "0")

    def memory(self) -> int:
        """Anonymous memory plus in-memory files (tmpfs, memfd, System V and POSIX shared memory) of the job."""
        if "unified" in self.folders:
            stat = _stat(os.path.join(self.folders["unified"], "memory.stat"))
            return stat.get("anon", 0) + stat.get("shmem", 0)
        stat = _stat(os.path.join(self.folders["memory"], "memory.stat"))
        return stat.get("total_rss", stat.get("rss", 0)) + stat.get("total_shmem", stat.get("shmem", 0))

    def oom_kills(self) -> int:
        """How many processes of the job the OOM killer has killed."""
        folder = self.folders.get("unified") or self.folders.get("memory")
        name = "memory.events" if "unified" in self.folders else "memory.oom_control"
        with contextlib.suppress(OSError):
            return _stat(os.path.join(folder, name)).get("oom_kill", 0)
        return 0

    def cpu_seconds(self) -> float | None:
        """CPU time of every process the job ever had (reaped or not, however reaped); None if not counted."""
        if "unified" in self.folders:
            with contextlib.suppress(OSError):
                return _stat(os.path.join(self.folders["unified"], "cpu.stat"))["usage_usec"] / 1e6
            return None
        if "cpuacct" in self.folders:
            with contextlib.suppress(OSError, ValueError):
                return int(_read(os.path.join(self.folders["cpuacct"], "cpuacct.usage"))) / 1e9
        return None

    def tasks(self) -> int | None:
        folder = self.folders.get("pids") or self.folders.get("unified")
        if folder is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int(_read(os.path.join(folder, "pids.current")))
        return None

    def remove(self) -> bool:
        """Remove the folders once the job's processes are gone; False if some could not be removed yet."""
        done = True
        for folder in self.folders.values():
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done


__all__ = ["JobCgroup", "MOUNT", "bind_args", "remove", "remove_stale", "template_cgroups"]
