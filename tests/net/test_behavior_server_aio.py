"""``StunServer`` doing RFC 5780 behaviour discovery on real loopback sockets (127.0.0.1 and
127.0.0.2 are two addresses of this host): each answer leaves from the socket CHANGE-REQUEST asks
for, RESPONSE-PORT aims it, TCP refuses both, and a bounded flood of requests aimed at a victim's
port is cut to the per-source budget (RFC 5780 §9)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from stun import Address, Message, MessageClass, Method, new_transaction_id
from stun.aio import StunServer
from stun.attributes import (
    Attribute,
    ChangeRequest,
    OtherAddress,
    ResponseOrigin,
    ResponsePort,
)
from stun.behavior import BehaviorAddresses
from stun.server import Outcome, ServerConfig

from .loopback import free_port_pair, run, udp_socket

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def request(*attributes: Attribute) -> tuple[bytes, bytes]:
    tid = new_transaction_id()
    data = Message(Method.BINDING, MessageClass.REQUEST, tid, list(attributes)).encode(
        fingerprint=True
    )
    return tid, data


async def serving(*, tcp: bool = False, **settings: Any) -> tuple[StunServer, BehaviorAddresses]:
    """A server listening on the four sockets of two loopback addresses and free ports (tried
    again on other ports when a parallel test took one meanwhile)."""
    for attempt in range(3):
        port = free_port_pair()
        behavior = BehaviorAddresses(
            primary=Address("127.0.0.1", port), alternate=Address("127.0.0.2", port + 1)
        )
        server = StunServer(ServerConfig(behavior=behavior, **settings))
        try:
            for host, socket_port in behavior.sockets:
                await server.listen("udp", host, socket_port)
                if tcp:
                    await server.listen("tcp", host, socket_port)
        except OSError:
            await server.close()
            if attempt == 2:
                raise
            continue
        return server, behavior
    raise AssertionError("unreachable")


def test_each_answer_leaves_from_the_socket_change_request_asks_for() -> None:
    async def main() -> None:
        server, behavior = await serving()
        primary, alternate = behavior.primary, behavior.alternate
        async with server:
            loop = asyncio.get_running_loop()
            with udp_socket("127.0.0.1") as sock:
                for change_ip, change_port in ((False, False), (True, False), (False, True),
                                               (True, True)):  # fmt: skip
                    tid, data = request(ChangeRequest(change_ip, change_port))
                    await loop.sock_sendto(sock, data, primary)
                    answer, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 5)
                    expected = Address(
                        alternate.host if change_ip else primary.host,
                        alternate.port if change_port else primary.port,
                    )
                    assert Address(*source) == expected
                    response = Message.decode(answer)
                    assert response.transaction_id == tid
                    assert response.get(ResponseOrigin) == ResponseOrigin(expected)
                    assert response.get(OtherAddress) == OtherAddress(alternate)

    run(main())


def test_a_flood_aimed_at_a_victims_port_is_cut_to_the_budget() -> None:
    async def main() -> None:
        server, behavior = await serving(discovery_rate=2.0, discovery_burst=5)
        async with server:
            loop = asyncio.get_running_loop()
            with udp_socket("127.0.0.1") as attacker, udp_socket("127.0.0.1") as victim:
                aimed = ResponsePort(victim.getsockname()[1])
                started = time.monotonic()
                for _ in range(300):  # bounded: 300 requests, no wait between them
                    await loop.sock_sendto(attacker, request(aimed)[1], behavior.primary)
                stats = server.server.stats
                while stats[Outcome.ANSWERED] + stats[Outcome.DISCOVERY_RATE_LIMITED] < 300:
                    await asyncio.sleep(0.01)
                elapsed = time.monotonic() - started
                received = 0
                with contextlib.suppress(TimeoutError):
                    while True:
                        await asyncio.wait_for(loop.sock_recvfrom(victim, 2048), 0.2)
                        received += 1
                assert 1 <= received <= stats[Outcome.ANSWERED] <= 5 + 2.0 * elapsed + 1
                assert stats[Outcome.DISCOVERY_RATE_LIMITED] >= 300 - 5 - 2.0 * elapsed - 1
                # a plain request from the same source is still answered, to its source
                tid, data = request()
                await loop.sock_sendto(attacker, data, behavior.primary)
                answer = await asyncio.wait_for(loop.sock_recv(attacker, 2048), 5)
                assert Message.decode(answer).transaction_id == tid

    run(main())


def test_over_tcp_change_request_gets_420_and_other_address_is_given() -> None:
    async def main() -> None:
        server, behavior = await serving(tcp=True)
        async with server:
            reached = Address(behavior.alternate.host, behavior.primary.port)
            reader, writer = await asyncio.open_connection(reached.host, reached.port)
            try:
                for attributes in ((ChangeRequest(True, True),), ()):
                    writer.write(request(*attributes)[1])
                    header = await asyncio.wait_for(reader.readexactly(20), 5)
                    body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
                    response = Message.decode(header + body)
                    if attributes:
                        assert response.message_class is MessageClass.ERROR_RESPONSE
                        assert response.error_code is not None
                        assert response.error_code.code == 420
                    else:
                        assert response.message_class is MessageClass.SUCCESS_RESPONSE
                        other = Address(behavior.primary.host, behavior.alternate.port)
                        assert response.get(OtherAddress) == OtherAddress(other)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    run(main())
