"""A jupyter_client kernel manager whose kernel starts inside the bubblewrap jail.

The kernel talks ZMQ over unix sockets (``transport="ipc"``) in a folder bound into the jail, because
the jail's own network namespace has no loopback shared with the grader.

    >>> km = JailedKernelManager(jail=None)  # jail=None: a plain kernel with rlimits only
"""
from __future__ import annotations

import os
import signal

from jupyter_client.manager import AsyncKernelManager
from traitlets import Any

from course_utils import env
from course_utils.grading.sandbox import Limits, RECORD_FILE_NAME, jail_env, rlimit_prefix, sandbox_command


class JailedKernelManager(AsyncKernelManager):
    """Starts ``python -m ipykernel_launcher`` jailed (``jail`` set) or under rlimits only (``jail=None``)."""

    jail = Any(None, allow_none=True)
    limits = Any(Limits())
    plain_env = Any(None, allow_none=True)   # environment for the unjailed mode

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.jail is not None:
            self.transport = "ipc"
            self.ip = str(self.jail.ipc_dir / "k")
            self.connection_file = str(self.jail.ipc_dir / "kernel.json")

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if self.jail is None:
            return rlimit_prefix(self.limits) + cmd
        return sandbox_command(cmd, self.jail, self.limits)

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        if self.jail is not None:  # the jailed uid must read it (jupyter_client writes it 0600)
            os.chown(self.connection_file, self.jail.uid, self.jail.uid)

    async def _async_pre_start_kernel(self, **kw):
        # interrupt through the control channel: a SIGINT to the jail's process group would kill bwrap
        self.kernel_spec.interrupt_mode = "message"
        if self.jail is None and self.plain_env is not None:
            kw["env"] = self.plain_env
        return await super()._async_pre_start_kernel(**kw)

    def exit_status(self) -> int | None:
        """The kernel process's exit status (negative: killed by that signal), None while alive."""
        process = getattr(self.provisioner, "process", None)
        return None if process is None else process.poll()

    def kill_now(self) -> None:
        """Kill the kernel (and, through --die-with-parent, everything jailed with it)."""
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()


def plain_env(limits: Limits, work_dir: str, records_dir: str) -> dict[str, str]:
    """Environment for ``--no-sandbox`` kernels: the jail's, pointing at host folders."""
    variables = jail_env(limits, os.path.join(records_dir, RECORD_FILE_NAME))
    variables["HOME"] = variables["IPYTHONDIR"] = variables["MPLCONFIGDIR"] = variables[env.CACHE_DIR] = work_dir
    variables.pop("JUPYTER_RUNTIME_DIR")
    return variables
