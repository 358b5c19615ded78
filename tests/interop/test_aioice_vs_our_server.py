"""aioice (0.13.0), an independent STUN/ICE implementation, against our STUN code on loopback.

Its codec builds requests and checks our answers (integrity and FINGERPRINT included); its ICE
agent gathers a server-reflexive candidate from our server; and in the other direction our
client reads a response made by aioice's codec.
"""

from __future__ import annotations

import asyncio
import socket

import aioice
import pytest
from aioice import stun as aioice_stun

from stun import Address, Outcome, ServerConfig, ShortTermCredentials, make_address
from stun._version import DEFAULT_SOFTWARE
from stun.aio import StunServer, binding
from tests.net.loopback import LOOPBACK_HOSTS, run, udp_exchange, udp_socket

BINDING = aioice_stun.Method.BINDING
#: An ICE connectivity check's USERNAME ("their-ufrag:our-ufrag", RFC 8445 §7.2.2) and password.
ICE_USERNAME = "ufragR:ufragL"
ICE_PASSWORD = "0123456789abcdefghijkl"


async def _exchange(
    host: str, request: aioice_stun.Message, config: ServerConfig | None = None
) -> tuple[aioice_stun.Message, Address]:
    """Send an aioice-built request to our server on ``host``; parse the answer with aioice.

    aioice's parser raises ValueError if a FINGERPRINT in the answer does not match.
    """
    async with StunServer(config) as server:
        listener = await server.listen("udp", host, 0)
        with udp_socket(host) as sock:
            answer = await udp_exchange(sock, bytes(request), listener.address)
            ours = make_address(*sock.getsockname()[:2])
    return aioice_stun.parse_message(answer), ours


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("fingerprint", [False, True], ids=["plain", "fingerprint"])
def test_aioice_binding(host: str, fingerprint: bool) -> None:
    request = aioice_stun.Message(BINDING, aioice_stun.Class.REQUEST)
    if fingerprint:
        request.add_fingerprint()

    response, ours = run(_exchange(host, request))

    assert response.message_method is BINDING
    assert response.message_class is aioice_stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ours
    assert response.attributes["SOFTWARE"] == DEFAULT_SOFTWARE
    assert ("FINGERPRINT" in response.attributes) == fingerprint


@pytest.mark.parametrize("password", [ICE_PASSWORD, "not-the-password"], ids=["good", "wrong"])
def test_aioice_connectivity_check_with_short_term_credentials(password: str) -> None:
    """A request shaped like aioice's ICE connectivity checks (RFC 8445 §7.1): USERNAME, PRIORITY,
    ICE-CONTROLLING, USE-CANDIDATE, then MESSAGE-INTEGRITY keyed with the password (RFC 8489
    §9.1.1: OpaqueString, the identity for ASCII) and FINGERPRINT, which aioice always adds."""
    config = ServerConfig(
        authentication=ShortTermCredentials.from_passwords({ICE_USERNAME: ICE_PASSWORD})
    )
    request = aioice_stun.Message(BINDING, aioice_stun.Class.REQUEST)
    request.attributes["USERNAME"] = ICE_USERNAME
    request.attributes["PRIORITY"] = 1853817087
    request.attributes["ICE-CONTROLLING"] = 0x1234_5678_9ABC_DEF0
    request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(password.encode())

    response, ours = run(_exchange("127.0.0.1", request, config))

    assert response.transaction_id == request.transaction_id
    assert "FINGERPRINT" in response.attributes
    if password == ICE_PASSWORD:
        assert response.message_class is aioice_stun.Class.RESPONSE
        assert response.check_message_integrity(ICE_PASSWORD.encode())
        assert response.attributes["XOR-MAPPED-ADDRESS"] == ours
    else:
        # §9.1.3: the key is unknown, so the 401 carries no MESSAGE-INTEGRITY.
        assert response.message_class is aioice_stun.Class.ERROR
        assert response.error_code == 401
        assert "MESSAGE-INTEGRITY" not in response.attributes


def test_aioice_gathers_a_server_reflexive_candidate() -> None:
    """aioice's agent gathers host candidates on this machine's non-loopback IPv4 addresses (it
    leaves 127.0.0.1 out) and asks our server, on 127.0.0.1, from each of them. The packets go
    between addresses of this host, so the kernel delivers them locally; none leaves the machine.
    Without NAT, each server-reflexive candidate is its host candidate's own address.
    """

    async def scenario() -> tuple[list[aioice.Candidate], int]:
        async with StunServer() as server:
            listener = await server.listen("udp", "127.0.0.1", 0)
            connection = aioice.Connection(
                ice_controlling=True,
                stun_server=("127.0.0.1", listener.address.port),
                use_ipv6=False,
            )
            try:
                await connection.gather_candidates()
                candidates = connection.local_candidates
            finally:
                await connection.close()
            return candidates, server.server.stats[Outcome.ANSWERED]

    candidates, answered = run(scenario())
    hosts = [(c.host, c.port) for c in candidates if c.type == "host"]
    if not hosts:
        pytest.skip("no non-loopback IPv4 address here: aioice gathers none, so asks no server")
    if answered == 0:
        pytest.skip(f"this host does not route {hosts} to 127.0.0.1: our server heard nothing")
    reflexive = [c for c in candidates if c.type == "srflx"]
    assert [(c.host, c.port) for c in reflexive] == hosts
    assert [(c.related_address, c.related_port) for c in reflexive] == hosts
    assert answered == len(hosts)


class _AioiceResponder(asyncio.DatagramProtocol):
    """A Binding responder made of aioice's codec: parses each request (checking its FINGERPRINT)
    and answers XOR-MAPPED-ADDRESS, SOFTWARE and FINGERPRINT."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests: list[tuple[aioice_stun.Message, Address]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        request = aioice_stun.parse_message(data)
        self.requests.append((request, make_address(*addr[:2])))
        response = aioice_stun.Message(
            request.message_method,
            aioice_stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": addr[:2], "SOFTWARE": "aioice codec"},
        )
        response.add_fingerprint()
        self.transport.sendto(bytes(response), addr)


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_our_client_reads_aioice_responses(host: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, responder = await loop.create_datagram_endpoint(
            _AioiceResponder, local_addr=(host, 0), family=family
        )
        try:
            port = transport.get_extra_info("sockname")[1]
            result = await binding(host, port)
        finally:
            transport.close()
        [(request, source)] = responder.requests
        assert request.message_method is BINDING
        assert request.attributes["SOFTWARE"] == DEFAULT_SOFTWARE
        assert "FINGERPRINT" in request.attributes  # and aioice's parser found it correct
        assert result.mapped_address == source
        assert result.software == "aioice codec"
        assert "FINGERPRINT" in result.features

    run(scenario())
