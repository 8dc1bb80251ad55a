"""The grader's end of a kernel's sockets: a byte relay, run by the job's supervisor, that counts every message.

    >>> counter = ZmtpCounter(limit=1024)
    >>> counter.feed(GREETING + bytes([0x00, 3]) + b"abc")   # a one-frame message of 3 bytes passes whole
    69
    >>> counter.feed(bytes([0x02]) + (2**20).to_bytes(8, "big"))   # a 1 MiB frame: refused at its size
    1
    >>> counter.violation
    'message'

Why: libzmq delivers a multipart message only once all of its frames have arrived, and buffers them
all meanwhile; its only size option (``ZMQ_MAXMSGSIZE``) bounds one frame. So a kernel that sends one
message of many large frames fills the reading process's memory before any code there can look at it.
The kernel's sockets therefore never reach the grader: the kernel binds them in its own network namespace
(abstract unix sockets), and its supervisor (pid 1 of the job, outside the kernel's reach, charged to the
job's memory) relays bytes between them and the sockets the grader connects to. On the way from the kernel
it reads the ZMTP 3 framing (greeting, then frame headers: flags and size) and adds up each message's
frames; the header of a frame that would take a message past ``limit`` is never passed on, nor anything
after it, and the supervisor stops the job with a note. Anything that is not ZMTP 3 with the NULL
mechanism (what libzmq speaks to libzmq) stops the job too, and so does sending more than ``total`` in all
(bytes, plus ``MESSAGE_COST`` a message: the job's traffic budget, ``runner.execute.traffic_budget``). So
whatever the grader's ZMQ queues hold, they never hold more than ``total`` bytes of one kernel, nor a message
over ``limit``.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time

#: what libzmq sends first: signature (0xFF, 8 bytes, 0x7F), version 3.1, mechanism "NULL", as-server, filler
GREETING = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\0") + bytes(32)
GREETING_BYTES = 64
MORE, LONG, COMMAND = 0x01, 0x02, 0x04
#: what one frame costs the reader beyond its bytes (libzmq's message structure), so that a message of
#: millions of empty frames counts too
FRAME_OVERHEAD = 64
COMMAND_BYTES = 64 * 1024
#: what one whole message costs against the job's traffic budget beyond its bytes: about what it costs the
#: grader to read one, however small, so that floods of tiny messages (status to nobody) count
MESSAGE_COST = 2048
#: bytes buffered per direction before the relay stops reading from that side (back-pressure)
BUFFER_BYTES = 1 << 20
CHUNK = 256 * 1024


class ZmtpCounter:
    """Follows the frames of one ZMTP 3 byte stream; says how much of each chunk may be passed on."""

    def __init__(self, limit: int):
        self.limit = limit
        self.violation: str | None = None  # "message" (a message over the limit), "protocol" or "traffic"
        self._greeting = b""
        self._header = b""  # a frame header read in part
        self._body_left = 0  # bytes of the current frame's body still to come
        self._message = 0  # bytes of the current message so far (its frames, overhead included)
        self.messages = 0

    def feed(self, data: bytes) -> int:
        """How many leading bytes of ``data`` may be passed on; fewer than ``len(data)`` only after a violation."""
        passed, view = 0, memoryview(data)
        while passed < len(data) and self.violation is None:
            if len(self._greeting) < GREETING_BYTES:
                take = min(GREETING_BYTES - len(self._greeting), len(data) - passed)
                self._greeting += bytes(view[passed : passed + take])
                if not self._greeting_ok():
                    self.violation = "protocol"
                    break
                passed += take
            elif self._body_left:
                take = min(self._body_left, len(data) - passed)
                self._body_left -= take
                passed += take
            else:
                take = min(self._header_size() - len(self._header), len(data) - passed)
                self._header += bytes(view[passed : passed + take])
                if len(self._header) < self._header_size():
                    passed += take  # the rest of the header comes with the next chunk: nothing to decide yet
                    continue
                if not self._frame_ok():
                    self._header = b""
                    break
                passed += take
                self._header = b""
        return passed

    def _greeting_ok(self) -> bool:
        """The greeting so far is ZMTP 3 or later with the NULL mechanism."""
        g = self._greeting
        if g[:1] and g[0] != 0xFF:
            return False
        if len(g) > 9 and not g[9] & 0x01:
            return False
        if len(g) > 10 and g[10] < 3:
            return False
        return len(g) < 32 or g[12:32] == b"NULL".ljust(20, b"\0")

    def _header_size(self) -> int:
        if not self._header:
            return 1
        return 9 if self._header[0] & LONG else 2

    def _frame_ok(self) -> bool:
        flags = self._header[0]
        size = int.from_bytes(self._header[1:], "big")
        if flags & ~(MORE | LONG | COMMAND) or (flags & COMMAND and flags & MORE):
            self.violation = "protocol"
            return False
        if flags & COMMAND:
            if size > COMMAND_BYTES:
                self.violation = "protocol"
                return False
        else:
            self._message += size + FRAME_OVERHEAD
            if self._message > self.limit:
                self.violation = "message"
                return False
            if not flags & MORE:
                self._message = 0
                self.messages += 1
        self._body_left = size
        return True


class _Link:
    """One connection of the grader, relayed to the kernel's socket of the same port."""

    def __init__(self, grader: socket.socket, kernel_address: str, limit: int):
        self.grader, self.kernel_address = grader, kernel_address
        self.kernel: socket.socket | None = None
        self.to_kernel = bytearray()
        self.to_grader = bytearray()
        self.counter = ZmtpCounter(limit)
        self.closed = False

    def try_connect(self) -> bool:
        """Connect to the kernel's socket; False while the kernel has not bound it yet."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.kernel_address)
        except OSError as error:
            sock.close()
            if error.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN):
                return False
            raise
        sock.setblocking(False)
        self.kernel = sock
        return True

    def close(self) -> None:
        self.closed = True
        for sock in (self.grader, self.kernel):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass


class Relay:
    """Every channel of one kernel: listens where the grader connects, relays to where the kernel listens.

    ``listen`` maps a path the grader connects to (``<ip>-<port>``) to the kernel's abstract socket name.
    ``step(timeout)`` moves whatever bytes are ready and returns the ``watch``-ed descriptors that became
    readable; ``violation`` says when the kernel broke the rules.
    """

    def __init__(self, listen: dict[str, str], limit: int, total: int = 2**62, connect_seconds: float = 120.0):
        self.limit, self.total, self.forwarded = limit, total, 0
        # poll(2), not epoll: an epoll instance is shared with a forked child (the kernel), whose closing it
        # would unregister the supervisor's own sockets
        self.selector = selectors.PollSelector()
        self.listeners: dict[socket.socket, str] = {}
        self.links: list[_Link] = []
        self.pending: list[tuple[_Link, float]] = []
        self.connect_seconds = connect_seconds
        self.violation: str | None = None
        self.watched: set[int] = set()
        for path, kernel_address in listen.items():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            server.listen(8)
            server.setblocking(False)
            self.listeners[server] = kernel_address
            self.selector.register(server, selectors.EVENT_READ, ("listen", server))

    def watch(self, fd: int) -> None:
        """Also wait for ``fd`` to be readable (the supervisor's control pipe)."""
        self.watched.add(fd)
        self.selector.register(fd, selectors.EVENT_READ, ("watch", fd))

    def _update(self, link: _Link) -> None:
        """(Re-)register the link's sockets for what they can do now (back-pressure on full buffers)."""
        for sock, inbound, outbound in (
            (link.grader, link.to_kernel, link.to_grader),
            (link.kernel, link.to_grader, link.to_kernel),
        ):
            if sock is None:
                continue
            events = 0
            if len(inbound) < BUFFER_BYTES:
                events |= selectors.EVENT_READ
            if outbound:
                events |= selectors.EVENT_WRITE
            try:
                key = self.selector.get_key(sock)
            except KeyError:
                key = None
            if key is None and events:
                self.selector.register(sock, events, ("link", link))
            elif key is not None and not events:
                self.selector.unregister(sock)
            elif key is not None and key.events != events:
                self.selector.modify(sock, events, ("link", link))

    def _drop(self, link: _Link) -> None:
        for sock in (link.grader, link.kernel):
            if sock is not None:
                try:
                    self.selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
        link.close()
        if link in self.links:
            self.links.remove(link)

    def step(self, timeout: float) -> list[int]:
        """Relay what can be relayed, waiting at most ``timeout`` seconds for something to happen."""
        now = time.monotonic()
        for link, deadline in list(self.pending):
            if link.closed:
                self.pending.remove((link, deadline))
            elif link.try_connect():
                self.pending.remove((link, deadline))
                self.links.append(link)
                self._update(link)
            elif now > deadline:
                self.pending.remove((link, deadline))
                link.close()
        if self.pending:
            timeout = min(timeout, 0.005)
        ready = []
        for key, events in self.selector.select(timeout):
            kind, target = key.data
            if kind == "watch":
                ready.append(target)
                continue
            if kind == "listen":
                self._accept(target)
                continue
            link: _Link = target
            if link.closed:
                continue
            try:
                self._move(link, key.fileobj, events)
            except OSError:
                self._drop(link)
                continue
            if self.violation:
                break
        return ready

    def _accept(self, server: socket.socket) -> None:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        link = _Link(conn, self.listeners[server], self.limit)
        # the grader's ZMQ may send its greeting before the kernel is there: keep it until it is
        self.selector.register(conn, selectors.EVENT_READ, ("link", link))
        self.pending.append((link, time.monotonic() + self.connect_seconds))

    def _move(self, link: _Link, sock, events: int) -> None:
        from_grader = sock is link.grader
        if events & selectors.EVENT_READ:
            data = sock.recv(CHUNK)
            if not data:  # one side closed: so does the other, once what it has been sent is delivered
                if not from_grader and link.to_grader:
                    link.grader.setblocking(True)
                    link.grader.settimeout(1.0)
                    try:
                        link.grader.sendall(link.to_grader)
                    except OSError:
                        pass
                self._drop(link)
                return
            if from_grader:
                link.to_kernel += data
            else:
                before = link.counter.messages
                allowed = link.counter.feed(data)
                cost = allowed + MESSAGE_COST * (link.counter.messages - before)
                if self.forwarded + cost > self.total:
                    allowed, link.counter.violation = max(0, min(allowed, self.total - self.forwarded)), "traffic"
                self.forwarded += cost
                link.to_grader += data[:allowed]
                if link.counter.violation:
                    self.violation = link.counter.violation
                    return
        if events & selectors.EVENT_WRITE:
            outbound = link.to_grader if from_grader else link.to_kernel
            if outbound:
                del outbound[: sock.send(outbound)]
        if link.kernel is None:  # still connecting: hold the grader's bytes, read no more than the buffer
            if len(link.to_kernel) >= BUFFER_BYTES:
                self.selector.unregister(link.grader)
            return
        self._update(link)

    def close(self) -> None:
        for link in list(self.links) + [link for link, _ in self.pending]:
            self._drop(link)
        for server in self.listeners:
            try:
                self.selector.unregister(server)
            except (KeyError, ValueError):
                pass
            server.close()
        self.listeners = {}
        self.selector.close()
