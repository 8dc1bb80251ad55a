"""The system calls a jailed kernel may not make: a seccomp filter, written as a classic BPF program by hand.

    >>> len(program("x86_64")) % 8, len(program("aarch64")) % 8     # struct sock_filter: 8 bytes each
    (0, 0)
    >>> install()   # in the kernel, last, after no_new_privs; every thread of the process  # doctest: +SKIP

Denied with EPERM: new namespaces (``unshare``, ``setns``, ``clone`` with a ``CLONE_NEW*`` flag), the
kernel keyrings (``keyctl``, ``add_key``, ``request_key``: they outlive the job), ``ptrace`` and reading
other processes' memory, ``bpf``, ``perf_event_open``, ``userfaultfd``, mounting and the other
administrator's calls (already powerless without capabilities; denied anyway). Denied with ENOSYS, so that
libraries fall back as on an older system: io_uring, and ``clone3`` (its flags are out of a filter's reach;
glibc then uses ``clone``). A call of another architecture's ABI (x32, i386) kills the process.
libseccomp's Python binding is not on PyPI, hence this small program; the unit tests run it in a child.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
#: (name, x86_64 number, aarch64 number); None where the call does not exist
DENIED = (
    ("unshare", 272, 97),
    ("setns", 308, 268),
    ("keyctl", 250, 219),
    ("add_key", 248, 217),
    ("request_key", 249, 218),
    ("ptrace", 101, 117),
    ("process_vm_readv", 310, 270),
    ("process_vm_writev", 311, 271),
    ("bpf", 321, 280),
    ("perf_event_open", 298, 241),
    ("userfaultfd", 323, 282),
    ("mount", 165, 40),
    ("umount2", 166, 39),
    ("pivot_root", 155, 41),
    ("chroot", 161, 51),
    ("open_tree", 428, 428),
    ("move_mount", 429, 429),
    ("fsopen", 430, 430),
    ("fsconfig", 431, 431),
    ("fsmount", 432, 432),
    ("fspick", 433, 433),
    ("mount_setattr", 442, 442),
    ("name_to_handle_at", 303, 264),
    ("open_by_handle_at", 304, 265),
    ("fanotify_init", 300, 262),
    ("kexec_load", 246, 104),
    ("kexec_file_load", 320, 294),
    ("init_module", 175, 105),
    ("finit_module", 313, 273),
    ("delete_module", 176, 106),
    ("acct", 163, 89),
    ("swapon", 167, 224),
    ("swapoff", 168, 225),
    ("reboot", 169, 142),
    ("syslog", 103, 116),
    ("quotactl", 179, 60),
    ("quotactl_fd", 443, 443),
    ("lookup_dcookie", 212, 18),
    ("vhangup", 153, 58),
    ("sethostname", 170, 161),
    ("setdomainname", 171, 162),
    ("pidfd_getfd", 438, 438),
    ("iopl", 172, None),
    ("ioperm", 173, None),
)
NOT_THERE = (
    ("io_uring_setup", 425, 425),
    ("io_uring_enter", 426, 426),
    ("io_uring_register", 427, 427),
    ("clone3", 435, 435),
)
CLONE = {"x86_64": 56, "aarch64": 220}
#: CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
CLONE_NEW_ANY = 0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
RET_ALLOW, RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
RET_ERRNO = 0x00050000
#: offsets in struct seccomp_data
NR, ARCH, ARG0 = 0, 4, 16
PR_SET_NO_NEW_PRIVS, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 38, 1, 1
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The filter for ``machine`` (default: this one) as the bytes of a ``struct sock_filter`` array."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine}")
    column = 1 if machine == "x86_64" else 2
    denied = [row[column] for row in DENIED if row[column] is not None]
    absent = [row[column] for row in NOT_THERE]
    # layout: arch check, load nr, [x32 check], one JEQ per call, clone check, then the four returns
    body: list[tuple[int, int, str | None]] = []  # (code, k, where a match jumps: "eperm", "enosys", "clone")
    body += [(JEQ_K, nr, "eperm") for nr in denied]
    body += [(JEQ_K, nr, "enosys") for nr in absent]
    body += [(JEQ_K, CLONE[machine], "clone")]
    head = [_op(LD_W_ABS, ARCH), None, _op(LD_W_ABS, NR)]
    if machine == "x86_64":
        head.append(None)  # JGE X32_SYSCALL_BIT -> kill
    # after the body: [0] allow, [1] eperm, [2] enosys, [3] kill, [4] clone: load arg0, [5] jset -> eperm, [6] allow
    tail_at = len(head) + len(body)
    targets = {"allow": tail_at, "eperm": tail_at + 1, "enosys": tail_at + 2, "kill": tail_at + 3, "clone": tail_at + 4}
    ops = list(head)
    ops[1] = _op(JEQ_K, AUDIT_ARCH[machine], 0, targets["kill"] - 2)
    if machine == "x86_64":
        ops[3] = _op(JGE_K, X32_SYSCALL_BIT, targets["kill"] - 4, 0)
    for index, (code, k, where) in enumerate(body):
        here = len(head) + index
        ops.append(_op(code, k, targets[where] - here - 1, 0))
    ops += [
        _op(RET_K, RET_ALLOW),
        _op(RET_K, RET_ERRNO | errno.EPERM),
        _op(RET_K, RET_ERRNO | errno.ENOSYS),
        _op(RET_K, RET_KILL_PROCESS),
        _op(LD_W_ABS, ARG0),
        _op(JSET_K, CLONE_NEW_ANY, 0, 1),
        _op(RET_K, RET_ERRNO | errno.EPERM),
        _op(RET_K, RET_ALLOW),
    ]
    for offset in range(0, len(ops)):
        _, jt, jf, _ = struct.unpack("=HBBI", ops[offset])
        assert offset + 1 + max(jt, jf) <= len(ops), "a jump past the program"
    return b"".join(ops)


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(machine: str | None = None) -> None:
    """Load the filter into every thread of this process (``SECCOMP_FILTER_FLAG_TSYNC``), no_new_privs first."""
    machine = machine or platform.machine()
    code = program(machine)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _Fprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    result = libc.syscall(SYS_SECCOMP[machine], SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog))
    if result != 0:
        err = ctypes.get_errno()
        why = "a thread could not be synchronised" if result > 0 else errno.errorcode.get(err, str(err))
        raise OSError(err, f"seccomp: {why}")
