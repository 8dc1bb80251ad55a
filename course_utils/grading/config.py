"""The grader's settings, as traitlets ``Configurable`` classes read from ``nbgrader_config.py`` (nbgrader's own
system).

    c.Limits.memory_bytes = 4 * 2**30      # in nbgrader_config.py, beside nbgrader's settings
    c.Grader.workers = 8
    c.Watcher.min_interval = 120

``Course.load`` reads them with the course's config; command-line options (``--workers``, ``--memory-mb``...)
override them for one run. ``python -m course_utils.grading config`` prints every setting with its help and
value. Environment variables are left to what a kernel itself reads (``course_utils.env``).
"""

from __future__ import annotations

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from course_utils.grading.runner.sandbox import JobLimits


class Limits(Configurable):
    """Per-submission limits; CPU, memory and tasks count every process of a kernel together."""

    cell_timeout = Int(120, help="Wall seconds per cell (default: nbgrader's Execute.timeout).").tag(config=True)
    notebook_timeout = Int(900, help="Wall seconds for a whole notebook (at least 3 cells' worth).").tag(config=True)
    cpu_seconds = Int(900, help="CPU seconds of all a kernel's processes together.").tag(config=True)
    memory_bytes = Int(6 * 2**30, help="Memory of all a kernel's processes plus its in-memory files.").tag(config=True)
    disk_bytes = Int(256 * 2**20, help="Size of each folder a kernel may write (/submission, /tmp).").tag(config=True)
    file_bytes = Int(256 * 2**20, help="Largest file a kernel may write.").tag(config=True)
    nproc = Int(256, help="Processes and threads of a kernel together.").tag(config=True)
    output_bytes = Int(2**20, help="Everything a notebook may output, updates and comms included.").tag(config=True)
    notebook_bytes = Int(16 * 2**20, help="Largest notebook accepted, and the most a graded one may grow to.").tag(
        config=True
    )
    max_cells = Int(2000, help="Most cells a submitted notebook may have.").tag(config=True)
    record_bytes = Int(64 * 2**20, help="Largest record file read back from a kernel (unpacked).").tag(config=True)
    threads = Int(1, help="OMP/MKL threads per kernel (the workers already use every core).").tag(config=True)
    message_bytes = Int(
        32 * 2**20,
        help="Largest message (all its parts) the grader takes from a kernel; a kernel "
        "that sends a bigger one is stopped before the grader reads any of it.",
    ).tag(config=True)
    render_seconds = Int(
        30,
        help="Seconds to make one notebook safe to show (markdown, outputs), in a helper "
        "process; past them it is shown as plain text.",
    ).tag(config=True)

    def job_limits(self) -> JobLimits:
        """These settings as the frozen value a grading job carries. Without ``c.Limits.cell_timeout``, nbgrader's
        ``Execute.timeout`` sets the cell timeout (and the notebook timeout is at least three cells' worth)."""
        values = {name: getattr(self, name) for name in self.class_own_traits(config=True)}
        execute = self.config.get("Execute", {})
        if "cell_timeout" not in self.config.get("Limits", {}) and "timeout" in execute:
            values["cell_timeout"] = int(execute["timeout"])
        if "notebook_timeout" not in self.config.get("Limits", {}):
            values["notebook_timeout"] = max(values["notebook_timeout"], 3 * values["cell_timeout"])
        return JobLimits(**values)


class Grader(Configurable):
    """Where and how ``autograde`` runs its jobs."""

    workers = Int(0, help="Notebooks graded at once on this machine (0: one per core).").tag(config=True)
    scheduler = Unicode(
        "", help="A Dask scheduler's address (tls://host:8786) to grade on instead of this machine."
    ).tag(config=True)
    keep_jobs = Bool(
        False,
        help="Keep each job's spool folder (its files, the kernel's log, the supervisor's "
        "status.json) to debug the grader.",
    ).tag(config=True)
    certificates = Unicode(
        "",
        help="Folder of the grading cluster's TLS certificate and key, for --scheduler and the hub's watcher "
        "(default: ~/.config/course-grading/cluster; `cluster certs` makes them)",
    ).tag(config=True)


class Watcher(Configurable):
    """Grading on submission (the hub's ``grader`` service)."""

    min_interval = Float(60.0, help="Seconds between two gradings of one student's assignment.").tag(config=True)
    poll = Float(1.0, help="Seconds between two looks at the exchange.").tag(config=True)
    notebook_timeout = Int(
        180,
        help="Wall seconds per notebook when grading on submission (c.Limits for the "
        "rest), so that no submission holds a worker for long.",
    ).tag(config=True)
    submission_bytes = Int(
        64 * 2**20, help="The most a submission's files may hold together; larger files are left out, with a note."
    ).tag(config=True)
    read_delay = Float(
        0.0,
        help="Tests only: seconds between choosing a submission folder and reading it (widens "
        "the window a swap of the folder would need).",
    ).tag(config=True)


CONFIGURABLES = (Limits, Grader, Watcher)


def describe(config) -> str:
    """Every setting, its help and its value under ``config``: what ``python -m course_utils.grading config``
    prints."""
    lines = []
    for cls in CONFIGURABLES:
        instance = cls(config=config)
        values = instance.job_limits().to_dict() if cls is Limits else {}
        lines.append(f"{cls.__name__}: {cls.__doc__.strip()}")
        for name, trait in sorted(cls.class_own_traits(config=True).items()):
            value = values.get(name, getattr(instance, name))
            lines.append(f"  c.{cls.__name__}.{name} = {value!r}   # {trait.help}")
    return "\n".join(lines)
