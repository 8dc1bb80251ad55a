"""course_utils.grading.runner.relay: the byte relay between a kernel and the grader counts each message's frames
together and refuses the header that would take one past the limit, wherever the stream is cut; with real ZMQ
sockets on both ends, a message over the limit never reaches the reader."""

from __future__ import annotations

import os
import threading
import time

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from course_utils.grading.runner.relay import GREETING, Relay, ZmtpCounter


def frame(body: bytes, more: bool = False) -> bytes:
    flags = (0x01 if more else 0) | (0x02 if len(body) > 255 else 0)
    size = len(body).to_bytes(8 if len(body) > 255 else 1, "big")
    return bytes([flags]) + size + body


def feed_in_pieces(counter: ZmtpCounter, stream: bytes, cuts: list[int]) -> int:
    passed, last = 0, 0
    for cut in sorted(set(c % (len(stream) + 1) for c in cuts)) + [len(stream)]:
        piece = stream[last:cut]
        got = counter.feed(piece)
        passed += got
        if got < len(piece):
            break
        last = cut
    return passed


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_a_stream_under_the_limit_passes_whole_however_it_is_cut(cuts):
    stream = GREETING + bytes([0x04, 5]) + b"READY" + frame(b"a" * 300, True) + frame(b"b" * 10) + frame(b"c" * 5)
    counter = ZmtpCounter(limit=1024)
    assert feed_in_pieces(counter, stream, cuts) == len(stream)
    assert counter.violation is None and counter.messages == 2


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_frames_count_together_and_the_refused_header_never_passes(cuts):
    head = GREETING + frame(b"x" * 400, True) + frame(b"y" * 400, True)
    stream = head + frame(b"z" * 400) + frame(b"after")
    counter = ZmtpCounter(limit=1000)
    passed = feed_in_pieces(counter, stream, cuts)
    # of the third frame, never its whole header (so the reader never learns its size, let alone allocates it)
    assert counter.violation == "message" and len(head) <= passed < len(head) + 9


def test_anything_but_zmtp_3_with_the_null_mechanism_is_refused():
    zmtp2 = b"\xff" + bytes(8) + b"\x7f" + bytes([1, 5])
    counter = ZmtpCounter(limit=1 << 20)
    counter.feed(zmtp2)
    assert counter.violation == "protocol"
    curve = bytearray(GREETING)
    curve[12:17] = b"CURVE"
    counter = ZmtpCounter(limit=1 << 20)
    counter.feed(bytes(curve))
    assert counter.violation == "protocol"
    counter = ZmtpCounter(limit=1 << 20)
    counter.feed(GREETING + bytes([0x40, 1, 0]))  # a flag no frame has
    assert counter.violation == "protocol"
    counter = ZmtpCounter(limit=1 << 40)
    counter.feed(GREETING + bytes([0x06]) + (2**20).to_bytes(8, "big"))  # a 1 MiB command
    assert counter.violation == "protocol"


def test_a_million_empty_frames_count_too():
    counter = ZmtpCounter(limit=1 << 20)
    counter.feed(GREETING + frame(b"", True) * 1_000_000)
    assert counter.violation == "message"


@pytest.fixture()
def relayed(tmp_path):
    """A PUB socket bound where a kernel binds (abstract), a relay in a thread, a SUB connected through it."""
    context = zmq.Context()
    name = f"relay-test-{os.getpid()}-{time.monotonic_ns()}"
    pub = context.socket(zmq.PUB)
    pub.bind(f"ipc://@{name}")
    relay = Relay({str(tmp_path / "s"): "\0" + name}, limit=1 << 20)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [relay.step(0.01) for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path / 's'}")
    yield pub, sub, relay
    stop.set()
    thread.join(5)
    relay.close()
    context.destroy(linger=0)


def test_through_real_zmq_a_small_message_arrives_and_a_large_one_never_does(relayed):
    pub, sub, relay = relayed
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # PUB/SUB: send until the subscription has gone through
        pub.send_multipart([b"small", b"message"])
        if sub.poll(100):
            break
    assert sub.recv_multipart() == [b"small", b"message"]
    while sub.poll(200):
        sub.recv_multipart()
    pub.send_multipart([b"big"] + [b"x" * (256 * 1024)] * 8)  # 2 MiB in frames of 256 KiB: over 1 MiB together
    deadline = time.monotonic() + 30
    while relay.violation is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.violation == "message"
    assert not sub.poll(500), "a part of the refused message reached the reader"
