"""stun.batch_io on real loopback sockets: the batched path (recvmmsg/sendmmsg) and the portable
one (recvfrom/sendto) read and send the same datagrams from and to the same addresses, whatever
their sizes and families; truncated datagrams and unusable addresses are dropped and counted;
the servers answer the same on either path."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import Message, MessageClass, Method, XorMappedAddress, new_transaction_id, udp_offload
from stun.aio import StunServer
from stun.aio_sockets import ipv6_loopback_available
from stun.batch_io import (
    BATCH,
    QUIET_READS,
    SEND_SLOT,
    MmsgIO,
    PortableIO,
    _load_libc,
    batch_available,
    datagram_io,
    flush_pending,
    hold_flush,
    pack_sockaddr,
    parse_sockaddr,
)
from stun.udp_offload import (
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENT,
    gro_segment_of_ancillary,
    gro_segment_size,
)

from .loopback import run

needs_batch = pytest.mark.skipif(not batch_available(), reason="recvmmsg/sendmmsg need Linux")
FAMILIES = [("127.0.0.1", socket.AF_INET)] + (
    [("::1", socket.AF_INET6)] if ipv6_loopback_available() else []
)


def _busy_mmsg(sock: socket.socket, **options: Any) -> MmsgIO:
    """A :class:`MmsgIO` as a busy socket has it: reading with ``recvmmsg`` from the start
    (a fresh one reads its first datagrams one ``recvmsg`` at a time)."""
    io = MmsgIO(sock, **options)
    io.busy = True
    return io


PATHS: list[Callable[[socket.socket], MmsgIO | PortableIO]] = [PortableIO] + (
    [MmsgIO, _busy_mmsg] if batch_available() else []
)
#: The two ways :class:`MmsgIO` reads: ``recvmsg`` while quiet, ``recvmmsg`` when busy.
MMSG_READS = [MmsgIO, _busy_mmsg]
FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _udp(host: str, family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


@pytest.fixture(params=FAMILIES, ids=lambda f: f[0])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    host, family = request.param
    server, client = _udp(host, family), _udp(host, family)
    yield server, client
    server.close()
    client.close()


def _drain(sock: socket.socket, count: int) -> list[tuple[bytes, tuple[object, ...]]]:
    """``count`` datagrams from a blocking read with a deadline (loopback delivers at once)."""
    sock.settimeout(2.0)
    try:
        return [sock.recvfrom(70000) for _ in range(count)]
    finally:
        sock.setblocking(False)


@pytest.mark.parametrize("make_io", PATHS, ids=lambda p: p.__name__)
@FAST
@given(
    sizes=st.lists(
        st.one_of(
            st.integers(0, 1500),
            st.integers(SEND_SLOT - 2, SEND_SLOT + 2),
            st.sampled_from([9000, 65507]),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_both_paths_carry_every_datagram_both_ways(
    pair: tuple[socket.socket, socket.socket],
    make_io: Callable[[socket.socket], MmsgIO | PortableIO],
    sizes: list[int],
) -> None:
    server, client = pair
    if server.family == socket.AF_INET6:
        sizes = [min(size, 65487) for size in sizes]  # the largest IPv6 UDP payload on loopback
    io = make_io(server)
    sent = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    for data in sent:
        client.sendto(data, server.getsockname())
    received = io.receive(256)
    assert [data for data, _ in received] == sent
    assert {sockaddr for _, sockaddr in received} == {client.getsockname()}
    for data, sockaddr in received:
        io.send(data[::-1], sockaddr)
    flush_pending()
    echoed = _drain(client, len(sent))
    assert [data for data, _ in echoed] == [data[::-1] for data in sent]
    assert {sockaddr for _, sockaddr in echoed} == {server.getsockname()}
    assert io.truncated == 0


@needs_batch
@pytest.mark.parametrize("make_io", MMSG_READS, ids=["quiet", "busy"])
@FAST
@given(sizes=st.lists(st.integers(0, 1200), min_size=1, max_size=70))
def test_truncated_datagrams_are_dropped_and_counted(
    pair: tuple[socket.socket, socket.socket],
    make_io: Callable[..., MmsgIO],
    sizes: list[int],
) -> None:
    server, client = pair
    io = make_io(server, receive_slot=600)
    for i, size in enumerate(sizes):
        client.sendto(bytes([i % 256]) * size, server.getsockname())
    received = io.receive(256)
    kept = [bytes([i % 256]) * size for i, size in enumerate(sizes) if size <= 600]
    assert [data for data, _ in received] == kept
    assert io.truncated == len(sizes) - len(kept)


@given(name=st.binary(max_size=140))
def test_any_kernel_address_parses_or_is_refused(name: bytes) -> None:
    sockaddr = parse_sockaddr(name)
    if sockaddr is not None:
        assert isinstance(sockaddr[0], str) and 0 <= sockaddr[1] <= 0xFFFF
        assert len(sockaddr) == (2 if struct.unpack_from("=H", name)[0] == socket.AF_INET else 4)


@given(
    address=st.one_of(
        st.ip_addresses(v=4).map(lambda a: (str(a), 0, 0)),
        st.tuples(st.ip_addresses(v=6).map(str), st.integers(0, (1 << 20) - 1), st.integers(0, 0)),
    ),
    port=st.integers(0, 0xFFFF),
)
def test_packed_addresses_read_back(address: tuple[str, int, int], port: int) -> None:
    host, flowinfo, scope_id = address
    if ":" in host:
        sockaddr: tuple[object, ...] = (host, port, flowinfo, scope_id)
    else:
        sockaddr = (host, port)
    packed = pack_sockaddr(sockaddr)
    assert packed is not None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    canonical = socket.inet_ntop(family, socket.inet_pton(family, host))
    assert parse_sockaddr(packed) == (canonical, *sockaddr[1:])


@given(
    sockaddr=st.tuples(
        st.one_of(st.text(max_size=45), st.integers(), st.none()),
        st.one_of(st.integers(-(1 << 40), 1 << 40), st.text(max_size=5)),
    )
)
def test_unusable_destinations_are_left_to_sendto(sockaddr: tuple[object, object]) -> None:
    packed = pack_sockaddr(sockaddr)
    assert packed is None or len(packed) in (16, 28)


@pytest.mark.parametrize("make_io", PATHS, ids=lambda p: p.__name__)
def test_icmp_errors_of_earlier_sends_do_not_stop_reading(
    pair: tuple[socket.socket, socket.socket],
    make_io: Callable[[socket.socket], MmsgIO | PortableIO],
) -> None:
    server, client = pair
    closed = _udp(server.getsockname()[0], server.family)
    gone = closed.getsockname()
    closed.close()
    io = make_io(server)
    io.send(b"to nobody", gone)
    assert io.flush() == 0 or isinstance(io, MmsgIO)
    client.sendto(b"hello", server.getsockname())
    deadline = 200
    received: list[tuple[bytes, tuple[object, ...]]] = []
    while not received and deadline:  # bounded: loopback delivers within microseconds
        received = io.receive(8)
        deadline -= 1
    assert [data for data, _ in received] == [b"hello"]


def test_a_library_that_does_not_load_falls_back_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="icestack.stun"):
        assert _load_libc("libicestack-absent.so.0") is None
    assert len(caplog.records) == 1
    assert "using recvfrom/sendto" in caplog.records[0].getMessage()


def test_asking_for_the_portable_path_gets_it() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert isinstance(datagram_io(sock, batch=False), PortableIO)
        expected = MmsgIO if batch_available() else PortableIO
        assert isinstance(datagram_io(sock), expected)


@pytest.mark.parametrize("batch_io", [False, True], ids=["portable", "batched"])
def test_stun_server_answers_a_burst_on_either_path(batch_io: bool) -> None:
    run(_answers_a_burst(batch_io))


async def _answers_a_burst(batch_io: bool) -> None:
    """64 requests at once come back as 64 right answers, whichever I/O the server uses."""
    async with StunServer(batch_io=batch_io) as server:
        listener = await server.listen("udp", "127.0.0.1", 0)
        client = _udp("127.0.0.1", socket.AF_INET)
        with client:
            ids = [new_transaction_id() for _ in range(64)]
            for tid in ids:
                request = Message(Method.BINDING, MessageClass.REQUEST, tid).encode()
                client.sendto(request, listener.address)
            loop = asyncio.get_running_loop()
            answers = [
                Message.decode(await asyncio.wait_for(loop.sock_recv(client, 2048), 5)) for _ in ids
            ]
            assert sorted(a.transaction_id for a in answers) == sorted(ids)
            mapped = {a.get(XorMappedAddress).address for a in answers}  # type: ignore[union-attr]
            assert mapped == {client.getsockname()}


@needs_batch
@pytest.mark.parametrize("queued", [1, 2, 70])
def test_a_datagram_the_kernel_refuses_is_counted_alone_or_in_a_batch(
    pair: tuple[socket.socket, socket.socket], queued: int
) -> None:
    """One answer queued goes out through ``sendto``, more through ``sendmmsg``: either way a
    datagram the kernel refuses (port 0: EINVAL) is dropped, counted, and the others still go."""
    server, client = pair
    io = MmsgIO(server)
    refused = (client.getsockname()[0], 0)
    destinations = [refused] + [client.getsockname()] * (queued - 1)
    refusals: list[int] = []
    io.on_send_error = refusals.append  # a full queue (BATCH) is flushed by send() itself
    for i, destination in enumerate(destinations):
        io.send(bytes([i % 251]) * 10, destination)
    assert io.flush() + sum(refusals) == 1
    echoed = _drain(client, queued - 1)
    assert [data for data, _ in echoed] == [bytes([i % 251]) * 10 for i in range(1, queued)]


@needs_batch
@FAST
@given(
    runs=st.lists(
        st.tuples(
            st.integers(0, 1), st.sampled_from([0, 1, 100, 1400, 1401, 2048]), st.integers(1, 30)
        ),
        min_size=1,
        max_size=6,
    )
)
def test_runs_of_equal_datagrams_to_one_destination_go_segmented(
    pair: tuple[socket.socket, socket.socket], runs: list[tuple[int, int, int]]
) -> None:
    """Runs of equal-sized datagrams to one destination leave as UDP_SEGMENT messages (where the
    kernel offers it) and arrive as the datagrams they were, in order; other sizes (empty, over
    GSO_MAX_SEGMENT) and other destinations go one a message."""
    server, client = pair
    other = _udp(client.getsockname()[0], client.family)
    try:
        io = MmsgIO(server)
        destinations = [client.getsockname(), other.getsockname()]
        sent: list[list[bytes]] = [[], []]
        for which, size, count in runs:
            for _ in range(count):
                data = bytes([len(sent[which]) % 251]) * size
                io.send(data, destinations[which])
                sent[which].append(data)
        assert io.flush() == 0
        for sock, datagrams in zip((client, other), sent, strict=True):
            assert [data for data, _ in _drain(sock, len(datagrams))] == datagrams
        assert io.gso  # loopback segments whatever size fits its MTU
        assert io.segmented == _segmentable(runs)
    finally:
        other.close()


def _segmentable(runs: list[tuple[int, int, int]]) -> int:
    """How many datagrams flush() sends inside segmented messages: runs (merged when adjacent
    with the same destination and size) of at least two, of 1..GSO_MAX_SEGMENT bytes, cut at
    BATCH datagrams and GSO_MAX_BYTES."""
    merged: list[list[int]] = []
    for which, size, count in runs:
        if merged and merged[-1][:2] == [which, size]:
            merged[-1][2] += count
        else:
            merged.append([which, size, count])
    total = 0
    position = 0
    for _, size, count in merged:
        if not 0 < size <= GSO_MAX_SEGMENT:
            position += count
            continue
        while count:
            room = BATCH - position % BATCH
            take = min(count, room, GSO_MAX_BYTES // size)
            if take > 1:
                total += take
            count -= take
            position += take
    return total


@needs_batch
def test_a_kernel_that_refuses_segmentation_gets_one_datagram_a_message(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A control message the kernel does not know (as an old kernel would see UDP_SEGMENT):
    segmentation is turned off for the socket and every datagram still arrives, in order."""
    server, client = pair
    monkeypatch.setattr(udp_offload, "UDP_SEGMENT", 0x7FFF)
    io = MmsgIO(server)
    sent = [bytes([i]) * 50 for i in range(10)]
    for data in sent:
        io.send(data, client.getsockname())
    assert io.flush() == 0
    assert [data for data, _ in _drain(client, len(sent))] == sent
    assert not io.gso and io.segmented == 0


# --------------------------------------------------------------------------- UDP GRO

_SOL_UDP = 17
_UDP_SEGMENT = 103
_MSG_CTRUNC = 0x08

_CMSG = struct.Struct("@Nii")


def _send_segmented(
    sock: socket.socket, payload: bytes, segment: int, to: tuple[str, int]
) -> None:
    """One message cut by the kernel every ``segment`` bytes (UDP GSO), as a GSO sender sends."""
    sock.sendmsg([payload], [(_SOL_UDP, _UDP_SEGMENT, struct.pack("@H", segment))], 0, to)


def _segments(payload: bytes, segment: int) -> list[bytes]:
    return [payload[at : at + segment] for at in range(0, len(payload), segment)] or [b""]


#: Messages as (segment size, full segments, length of a last shorter one or 0), within the
#: kernel's limits (64 segments, one IP packet).
_MESSAGES = st.lists(
    st.integers(1, GSO_MAX_SEGMENT).flatmap(
        lambda size: st.tuples(
            st.just(size),
            st.integers(1, min(63, GSO_MAX_BYTES // size - 1)),
            st.integers(0, size - 1),
        )
    ),
    min_size=1,
    max_size=8,
)


@needs_batch
@pytest.mark.parametrize("make_io", MMSG_READS, ids=["quiet", "busy"])
@pytest.mark.parametrize("gro", [True, False], ids=["gro", "no-gro"])
@FAST
@given(messages=_MESSAGES)
def test_segmented_messages_arrive_as_their_datagrams_with_or_without_gro(
    pair: tuple[socket.socket, socket.socket],
    make_io: Callable[..., MmsgIO],
    gro: bool,
    messages: list[tuple[int, int, int]],
) -> None:
    """Whether the receiver takes coalesced messages (GRO: cut apart by receive()) or the kernel
    cuts them at its queue, the same datagrams arrive, in order, from the sender's address, read
    by ``recvmsg`` or ``recvmmsg``."""
    server, client = pair
    io = make_io(server, gro=gro)
    assert io.gro == gro  # loopback offers GRO on every kernel that offers GSO
    expected: list[bytes] = []
    coalesced = 0
    for n, (size, full, last) in enumerate(messages):
        payload = bytes((n + i // size) % 251 for i in range(size * full + last))
        _send_segmented(client, payload, size, server.getsockname())
        parts = _segments(payload, size)
        expected += parts
        coalesced += len(parts) if len(parts) > 1 else 0
    received = io.receive(4096)
    assert [data for data, _ in received] == expected
    assert {sockaddr for _, sockaddr in received} == {client.getsockname()}
    assert io.coalesced == (coalesced if gro else 0)
    assert io.truncated == 0


@needs_batch
def test_icestack_to_icestack_runs_arrive_coalesced_and_cut_apart(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A flush's run (GSO) reaches a GRO receiver as one message and leaves receive() as the
    datagrams that were queued."""
    server, client = pair
    sender, receiver = MmsgIO(client), MmsgIO(server)
    sent = [bytes([i]) * 1000 for i in range(40)] + [b"tail"]
    for data in sent:
        sender.send(data, server.getsockname())
    assert sender.flush() == 0
    received = receiver.receive(256)
    assert [data for data, _ in received] == sent
    assert receiver.coalesced == sender.segmented == 40


@needs_batch
@pytest.mark.parametrize("make_io", MMSG_READS, ids=["quiet", "busy"])
def test_a_coalesced_datagram_larger_than_the_slot_is_dropped_and_counted(
    pair: tuple[socket.socket, socket.socket], make_io: Callable[..., MmsgIO]
) -> None:
    """Never a part of a coalesced message: one that does not fit the receive slot is dropped
    whole and counted once; one that fits is cut apart."""
    server, client = pair
    io = make_io(server, receive_slot=600, gro=True)
    _send_segmented(client, bytes(4 * 300), 300, server.getsockname())
    _send_segmented(client, b"a" * 250 + b"b" * 250, 250, server.getsockname())
    received = io.receive(256)
    assert [data for data, _ in received] == [b"a" * 250, b"b" * 250]
    assert io.truncated == 1 and io.coalesced == 2


def _cmsg(level: int, kind: int, data: bytes) -> bytes:
    space = socket.CMSG_SPACE(len(data))
    raw = _CMSG.pack(socket.CMSG_LEN(len(data)), level, kind) + data
    return raw + bytes(space - len(raw))


@given(control=st.binary(max_size=120), flags=st.integers(0, 0xFF))
def test_any_control_bytes_give_a_size_or_a_refusal(control: bytes, flags: int) -> None:
    size = gro_segment_size(control, flags)
    assert size is None or (isinstance(size, int) and size >= 0)


@given(
    before=st.lists(
        st.tuples(st.integers(0, 300), st.integers(0, 300), st.binary(max_size=20)), max_size=3
    ),
    size=st.integers(-(1 << 31), (1 << 31) - 1),
    cut=st.integers(0, 200),
)
def test_the_gro_control_message_is_found_whole_or_refused(
    before: list[tuple[int, int, bytes]], size: int, cut: int
) -> None:
    """Behind other control messages, a UDP_GRO one gives its size (a size below 1 is refused);
    cut short by the kernel (MSG_CTRUNC), it is refused, never misread."""
    others = [(level, kind, data) for level, kind, data in before if (level, kind) != (17, 104)]
    control = b"".join(_cmsg(*other) for other in others)
    control += _cmsg(_SOL_UDP, udp_offload.UDP_GRO, struct.pack("@i", size))
    expected = size if size > 0 else None
    assert gro_segment_size(control, 0) == expected
    whole = len(control) - socket.CMSG_SPACE(4) + socket.CMSG_LEN(4)  # without the padding
    assert gro_segment_size(control[:cut], _MSG_CTRUNC) == (expected if cut >= whole else None)


@given(
    before=st.lists(
        st.tuples(st.integers(0, 300), st.integers(0, 300), st.binary(max_size=20)), max_size=3
    ),
    value=st.one_of(st.none(), st.binary(max_size=8)),
    flags=st.sampled_from([0, _MSG_CTRUNC]),
)
def test_control_messages_cut_apart_by_recvmsg_give_the_same_size(
    before: list[tuple[int, int, bytes]], value: bytes | None, flags: int
) -> None:
    """The quiet read's ``recvmsg`` hands the control messages over cut apart: the segment
    size read from them is the one :func:`gro_segment_size` reads from their bytes."""
    ancillary = [(level, kind, data) for level, kind, data in before if (level, kind) != (17, 104)]
    if value is not None:
        ancillary.append((_SOL_UDP, udp_offload.UDP_GRO, value))
    control = b"".join(_cmsg(*message) for message in ancillary)
    assert gro_segment_of_ancillary(ancillary, flags) == gro_segment_size(control, flags)


@needs_batch
def test_a_socket_reads_with_recvmsg_while_quiet_and_recvmmsg_while_busy(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A fresh socket is quiet; a read that finds QUIET_READS datagrams or more makes it busy
    (the rest of that read, and the next reads, through recvmmsg); one that finds fewer makes it
    quiet again. Every datagram arrives, in order, whichever way it was read."""
    server, client = pair
    io = MmsgIO(server)
    sent: list[bytes] = []
    received: list[bytes] = []
    for burst, busy_after in ((1, False), (QUIET_READS + 5, True), (QUIET_READS, True), (1, False)):
        datagrams = [f"{len(sent) + i}".encode() for i in range(burst)]
        for data in datagrams:
            client.sendto(data, server.getsockname())
        sent += datagrams
        received += [data for data, _ in io.receive(256)]
        assert io.busy == busy_after
    assert received == sent
    assert io.receive(256) == []
    run = bytes(range(QUIET_READS + 1)) * 100  # one coalesced message: a run of datagrams
    _send_segmented(client, run, 100, server.getsockname())
    assert [data for data, _ in io.receive(256)] == _segments(run, 100)
    assert io.busy  # however many messages it took (the kernel cuts it without GRO)


@needs_batch
def test_a_kernel_without_gro_gets_whole_datagrams(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket option the kernel does not know (as an old kernel sees UDP_GRO): GRO is off for
    the socket, without an error, and segmented messages still arrive as their datagrams."""
    server, client = pair
    monkeypatch.setattr(udp_offload, "UDP_GRO", 0x7FFF)
    io = MmsgIO(server)
    assert not io.gro
    _send_segmented(client, bytes(range(250)) * 3, 250, server.getsockname())
    assert [data for data, _ in io.receive(256)] == [bytes(range(250))] * 3
    assert io.coalesced == 0


@needs_batch
def test_a_held_flush_waits_for_its_holder_and_a_free_send_for_the_next_iteration(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    io = MmsgIO(server)
    destination = client.getsockname()

    def arrived() -> bool:
        try:
            client.recvfrom(100)
        except BlockingIOError:
            return False
        return True

    async def scenario() -> None:
        # The thread's first queued send makes its arena; a hold before that holds nothing (a
        # thread that never batches pays for no buffers). Warm it, whatever ran before.
        io.send(b"warm", destination)
        for _ in range(3):
            await asyncio.sleep(0)  # the flush it scheduled runs
        assert arrived()
        hold_flush()  # as a reader does before its batch: it flushes itself
        io.send(b"held", destination)
        for _ in range(3):
            await asyncio.sleep(0)
        assert not arrived()  # no flush of its own was scheduled
        flush_pending()
        assert arrived()
        io.send(b"free", destination)  # outside any reader: flushed by the loop
        assert not arrived()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert arrived()

    run(scenario())
