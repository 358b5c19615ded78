"""ice.outbox on real sockets, on both I/O paths (``sendmmsg`` batches and one ``sendto`` each):
data sent in a loop arrives complete and in order; ``close()`` sends what is queued; an error
the kernel gives for a batched datagram is raised by the next send to its address; a full send
buffer (a rate-limited veth in network namespaces the test creates) makes senders wait, and
nothing is lost or reordered."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from ice.outbox import Outbox
from stun.batch_io import MmsgIO, PortableIO, batch_available, flush_pending
from tests.ice.test_connection import connected

from .loopback import run, udp_socket, until
from .netns import LINK_IPV4, link

PATHS = [
    pytest.param(
        True,
        id="batched",
        marks=pytest.mark.skipif(not batch_available(), reason="recvmmsg/sendmmsg need Linux"),
    ),
    pytest.param(False, id="portable"),
]


def numbered(index: int, size: int = 200) -> bytes:
    """A data datagram (first byte above 3: not STUN) that says where it belongs."""
    return b"\x80" + index.to_bytes(4, "big") + bytes(size - 5)


@pytest.mark.parametrize("batch_io", PATHS)
def test_data_sent_in_a_loop_arrives_complete_and_in_order(batch_io: bool) -> None:
    count = 300  # several full batches, well within the receive queue and socket buffer

    async def main() -> list[bytes]:
        async with connected(tcp=False, batch_io=batch_io) as (a, b):
            [base] = a._bases.values()
            assert isinstance(base.io, MmsgIO if batch_io else PortableIO)
            for index in range(count):  # no yield between sends: batches fill and go out
                await a.send(numbered(index))
            return [await b.recv() for _ in range(count)]

    assert run(main()) == [numbered(index) for index in range(count)]


@pytest.mark.parametrize("batch_io", PATHS)
def test_a_buffer_reused_after_send_does_not_change_what_was_sent(batch_io: bool) -> None:
    """send() returns once the datagram is queued: a caller that refills its buffer at once
    (a recv_into-and-forward loop) must not change what leaves with the batch."""

    async def main() -> list[bytes]:
        async with connected(tcp=False, batch_io=batch_io) as (a, b):
            buffer = bytearray(numbered(0))
            for index in range(3):  # no yield between sends: all three leave in one batch
                buffer[:] = numbered(index)
                await a.send(buffer)  # bytes-like, as sendto documents
            buffer[:] = numbered(99)
            return [await b.recv() for _ in range(3)]

    assert run(main()) == [numbered(index) for index in range(3)]


@pytest.mark.parametrize("batch_io", PATHS)
def test_close_sends_what_is_queued_and_then_refuses(batch_io: bool) -> None:
    async def main() -> None:
        sender, receiver = udp_socket("127.0.0.1"), udp_socket("127.0.0.1")
        outbox = Outbox(sender, batch_io=batch_io)
        destination = receiver.getsockname()
        for index in range(10):
            assert outbox.put(numbered(index), destination)
        outbox.close()  # before the loop's flush could run
        receiver.settimeout(2.0)
        got = [receiver.recv(2048) for _ in range(10)]
        assert got == [numbered(index) for index in range(10)]
        assert outbox.dropped == 0
        assert not outbox.put(numbered(10), destination)
        assert not await outbox.send(numbered(10), destination)
        sender.close()
        receiver.close()

    run(main())


@pytest.mark.parametrize("shared", [False, True], ids=["own socket", "mux socket"])
@pytest.mark.parametrize("batch_io", PATHS)
def test_the_agents_datagrams_leave_at_once_from_a_socket_of_one_connection(
    batch_io: bool, shared: bool
) -> None:
    """A connection's own socket sends the agent's datagram at once while nothing is queued,
    and after what is (in order); a mux's socket, shared by sessions, batches them."""

    async def main() -> None:
        sender, receiver = udp_socket("127.0.0.1"), udp_socket("127.0.0.1")
        outbox = Outbox(sender, batch_io=batch_io, shared=shared)
        destination = receiver.getsockname()

        def waiting() -> list[bytes]:
            got = []
            while True:
                try:
                    got.append(receiver.recv(2048))
                except BlockingIOError:
                    return got

        outbox.send_nowait(b"\x00check", destination)
        queued = shared and batch_io
        assert waiting() == ([] if queued else [b"\x00check"])
        flush_pending()
        assert waiting() == ([b"\x00check"] if queued else [])
        assert outbox.put(numbered(0), destination)  # data: queued on the batched path
        outbox.send_nowait(b"\x00answer", destination)
        flush_pending()
        assert waiting() == [numbered(0), b"\x00answer"]  # in the order given
        assert outbox.dropped == 0
        outbox.close()
        sender.close()
        receiver.close()

    run(main())


@pytest.mark.parametrize("batch_io", PATHS)
def test_an_error_is_raised_by_the_send_that_can_say_it(batch_io: bool) -> None:
    # Loopback's broadcast address without SO_BROADCAST: the kernel refuses (EACCES) and sends
    # nothing.
    async def main() -> None:
        sender, receiver = udp_socket("127.0.0.1"), udp_socket("127.0.0.1")
        outbox = Outbox(sender, batch_io=batch_io)
        refused = ("127.255.255.255", receiver.getsockname()[1])
        if batch_io:
            assert outbox.put(b"\x80first", refused)  # queued: nothing known yet
            flush_pending()
            assert outbox.dropped == 1
            assert outbox.put(b"\x80elsewhere", receiver.getsockname())  # not its error
        with pytest.raises(PermissionError) as raised:
            outbox.put(b"\x80second", refused)
        assert raised.value.errno == errno.EACCES
        outbox.close()
        receiver.settimeout(2.0)
        if batch_io:
            assert receiver.recv(2048) == b"\x80elsewhere"
        sender.close()
        receiver.close()

    run(main())


@pytest.mark.parametrize("batch_io", PATHS)
def test_a_datagram_larger_than_a_batch_slot_goes_after_the_queue_and_raises_at_once(
    batch_io: bool,
) -> None:
    async def main() -> None:
        sender, receiver = udp_socket("127.0.0.1"), udp_socket("127.0.0.1")
        outbox = Outbox(sender, batch_io=batch_io)
        destination = receiver.getsockname()
        big = numbered(1, 9000)
        assert outbox.put(numbered(0), destination)
        assert outbox.put(big, destination)
        with pytest.raises(OSError) as raised:
            outbox.put(bytes(70000), destination)
        assert raised.value.errno == errno.EMSGSIZE
        receiver.settimeout(2.0)
        assert [receiver.recv(65535) for _ in range(2)] == [numbered(0), big]
        outbox.close()
        sender.close()
        receiver.close()

    run(main())


# ----------------------------------------------------------------- a full send buffer (netns)

_CLONE_NEWNET = 0x40000000


def _socket_in(namespace: str, make: Callable[[], socket.socket]) -> socket.socket:
    """A socket made inside network namespace ``namespace``: a thread enters it (setns applies
    to the calling thread only), makes the socket and ends; the socket stays in the namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    made: list[socket.socket | BaseException] = []

    def enter_and_make() -> None:
        fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                made.append(OSError(ctypes.get_errno(), f"setns({namespace})"))
                return
            made.append(make())
        except BaseException as exc:
            made.append(exc)
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter_and_make)
    thread.start()
    thread.join(10)
    [result] = made
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.fixture(scope="module")
def slow_link() -> Iterator[tuple[str, str]]:
    """Two namespaces on a veth whose left end sends at 8 Mbit/s through a token bucket that
    holds up to 5 s of packets: a sender's small socket buffer fills long before the link is
    done, and the kernel says EAGAIN."""
    with link(ipv6=False) as net:
        net.run(
            "left",
            "tc",
            "qdisc",
            "add",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            "8mbit",
            "burst",
            "16kb",
            "latency",
            "5s",
        )
        yield net.namespace("left"), net.namespace("right")


@pytest.mark.netns
@pytest.mark.parametrize("batch_io", PATHS)
def test_a_full_send_buffer_makes_senders_wait_and_loses_nothing(
    slow_link: tuple[str, str], batch_io: bool
) -> None:
    left, right = slow_link
    count, size = 400, 1000  # 0.4 MB: about 0.4 s at 8 Mbit/s

    def sender() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # a few datagrams
        sock.bind((LINK_IPV4["left"], 0))
        sock.setblocking(False)
        return sock

    def receiver() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind((LINK_IPV4["right"], 0))
        sock.setblocking(False)
        return sock

    out, into = _socket_in(left, sender), _socket_in(right, receiver)

    async def main() -> list[bytes]:
        outbox = Outbox(out, batch_io=batch_io)
        destination = into.getsockname()
        got: list[bytes] = []
        loop = asyncio.get_running_loop()
        loop.add_reader(into.fileno(), lambda: got.append(into.recv(2048)))
        waited = 0
        for index in range(count):
            data = numbered(index, size)
            if not outbox.put(data, destination):
                waited += 1
                assert await outbox.send(data, destination)
        await until(lambda: len(got) == count, timeout=15)
        loop.remove_reader(into.fileno())
        assert waited > 0, "the buffer never filled: the test proves nothing"
        assert outbox.dropped == 0
        outbox.close()
        return got

    try:
        assert run(main()) == [numbered(index, size) for index in range(count)]
    finally:
        out.close()
        into.close()
