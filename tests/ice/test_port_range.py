"""Port ranges (:mod:`stun.ports`): every socket ``Connection(port_range=...)`` and
``TurnClient.connect(..., port_range=...)`` bind takes a port of the range, and a range with no
free port left fails saying which range, on loopback.

Ranges are taken below Linux's ephemeral ports (32768-60999), found free by holding them first,
so that no other socket of the machine can take them meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import random
import socket
from collections.abc import Iterator

import pytest

from ice import Connection, IceConnectionError, LocalProtocolError
from stun.ports import PortRangeExhausted, bind_in_range
from tests.ice.test_connection import connected, make
from tests.net.loopback import run
from turn import LocalProtocolError as TurnLocalProtocolError
from turn.aio import TurnClient


@contextlib.contextmanager
def held_range(size: int, kinds: tuple[int, ...]) -> Iterator[tuple[list[socket.socket], int]]:
    """A range of ``size`` ports on 127.0.0.1, every port held by a socket of each kind in
    ``kinds`` (so nobody else takes them); yields the sockets and the first port."""
    for _ in range(50):
        first = random.randrange(20000, 32000 - size)
        held: list[socket.socket] = []
        try:
            for port in range(first, first + size):
                for kind in kinds:
                    sock = socket.socket(socket.AF_INET, kind)
                    held.append(sock)
                    sock.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE
            for sock in held:
                sock.close()
            continue
        try:
            yield held, first
        finally:
            for sock in held:
                sock.close()
        return
    pytest.skip("no free range of ports below the ephemeral ones on 127.0.0.1")


def free_range(size: int) -> tuple[int, int]:
    """A range free a moment ago, for UDP and TCP alike."""
    with held_range(size, (socket.SOCK_DGRAM, socket.SOCK_STREAM)) as (_, first):
        pass
    return first, first + size - 1


def test_a_connection_binds_every_socket_in_its_port_range() -> None:
    low, high = free_range(12)

    async def main() -> None:
        async with connected(port_range=(low, high)) as (a, b):
            for connection in (a, b):
                ports = [c.port for c in connection.local_candidates if c.tcp_type != "active"]
                assert ports and all(low <= port <= high for port in ports)
                assert {c.transport for c in connection.local_candidates} == {"udp", "tcp"}
            await a.send(b"through the range")
            assert await b.recv() == b"through the range"

    run(main())


def test_a_full_port_range_fails_gathering_naming_the_range() -> None:
    with held_range(3, (socket.SOCK_DGRAM,)) as (_, first):

        async def main() -> None:
            async with make("127.0.0.1", True, port_range=(first, first + 2)) as connection:
                with pytest.raises(IceConnectionError, match=f"{first}-{first + 2}.*all 3 in use"):
                    await connection.gather_candidates()

        run(main())


def test_a_full_range_for_the_tcp_listener_fails_too() -> None:
    with held_range(2, (socket.SOCK_STREAM,)) as (_, first):

        async def main() -> None:
            connection = make("127.0.0.1", True, port_range=(first, first + 1), udp=False)
            async with connection:
                with pytest.raises(IceConnectionError, match="no free TCP port"):
                    await connection.gather_candidates()

        run(main())


@pytest.mark.parametrize("value", [(5, 1), (0, 10), (1, 70000), (1,), "50000-50100", (1.0, 2)])
def test_a_bad_port_range_is_refused_at_the_call(value: object) -> None:
    with pytest.raises(LocalProtocolError, match="port_range"):
        Connection(True, port_range=value)  # type: ignore[arg-type]


def test_a_turn_client_binds_its_udp_socket_in_the_range() -> None:
    low, high = free_range(4)

    async def main() -> None:
        client = await TurnClient.connect("127.0.0.1", 3478, port_range=(low, high))
        async with client:
            assert client.local_address is not None
            assert low <= client.local_address.port <= high
        with pytest.raises(TurnLocalProtocolError, match="port_range"):
            await TurnClient.connect("127.0.0.1", 3478, port_range=(2, 1))

    run(main())


def test_bind_in_range_walks_past_taken_ports_and_skips_avoid() -> None:
    with held_range(3, (socket.SOCK_DGRAM,)) as (held, first):
        held[1].close()  # the middle port is free again
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            bind_in_range(sock, "127.0.0.1", (first, first + 2))
            assert sock.getsockname()[1] == first + 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(PortRangeExhausted) as caught:
                bind_in_range(sock, "127.0.0.1", (first, first + 2), avoid=first + 1)
            assert caught.value.errno == errno.EADDRINUSE
