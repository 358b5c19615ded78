"""``ice.Connection``'s arguments, checked at the call (redteam #10): every wrong one is refused
with a message that names the argument and what is wanted; servers are taken as pairs, text and
URIs; arguments left out keep the ``config``'s values. The servers are real, on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ice import CandidateType, Connection
from ice.config import AgentConfig, RelayServer
from ice.connection_options import TurnRestCredentials, stun_servers, turn_servers
from ice.errors import LocalProtocolError
from stun.address import Address
from stun.aio import StunServer
from tests.net.loopback import run
from tests.net.test_ice_faults import (
    PASSWORD,
    USER,
    connect,
    exchange,
    relay_only,
    round_trip,
    turn_server,
)
from turn.server import rest_api_password
from turn.transport import ClientTransport

UDP, TCP, TLS = ClientTransport.UDP, ClientTransport.TCP, ClientTransport.TLS
LOOPBACK: dict[str, Any] = {
    "include_loopback": True,
    "interfaces": ["127.0.0.1"],
    "use_ipv6": False,
}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"stun_servers": ["127.0.0.1:0"]},
            "stun_servers[0]: '127.0.0.1:0' is not a 'host:port' "
            "or a stun: URI: port '0' is not 1-65535",
        ),
        ({"stun_servers": [("127.0.0.1", 70000)]}, "stun_servers[0]: port 70000 out of range"),
        ({"stun_servers": [("127.0.0.1", 0)]}, "stun_servers[0]: port 0 out of range"),
        ({"stun_servers": [("127.0.0.1", "3478")]}, "stun_servers[0]: port '3478' out of range"),
        (
            {"stun_servers": ("127.0.0.1", 3478)},
            "stun_servers is a list of servers: write stun_servers=[('127.0.0.1', 3478)]",
        ),
        ({"stun_servers": "127.0.0.1:3478"}, "stun_servers is a list of servers"),
        ({"stun_servers": [3478]}, "stun_servers[0]: want a (host, port) pair"),
        (
            {"stun_servers": ["stuns:example.org"]},
            "is over TLS: ICE asks STUN servers over UDP "
            "only (a TURN server over TCP or TLS goes in turn_servers)",
        ),
        ({"stun_servers": ["turn:example.org"]}, "is a turn: URI: give it in turn_servers"),
        (
            {"turn_servers": [("127.0.0.1", 3478)]},
            "turn_servers[0]: want (host, port, username, "
            "password), (turn: URI, username, password) or (turn: URI, TurnRestCredentials(secret, "
            "user)), not ('127.0.0.1', 3478)",
        ),
        ({"turn_servers": [("127.0.0.1", 70000, "u", "p")]}, "turn_servers[0]: port 70000 out"),
        (
            {"turn_servers": ("turns:127.0.0.1", "u", "p")},
            "turn_servers is a list of servers: write turn_servers=[('turns:127.0.0.1', 'u', 'p')]",
        ),
        (
            {"turn_servers": [("turns:127.0.0.1?transport=udp", "u", "p")]},
            "turns: over UDP means DTLS, which is not supported",
        ),
        (
            {"turn_servers": [("turn:127.0.0.1?transport=sctp", "u", "p")]},
            "transport 'sctp' is not supported: udp or tcp",
        ),
        (
            {"turn_servers": [("turns:127.0.0.1", TurnRestCredentials("s"), "p")]},
            "the username must be a non-empty string",
        ),
        (
            {"turn_servers": [("turns:127.0.0.1", "u", TurnRestCredentials("s"))]},
            "TurnRestCredentials replace the username and password",
        ),
        (
            {"turn_servers": [("turns:127.0.0.1", "secret")]},
            "want (host, port, username, "
            "password), (turn: URI, username, password) or (turn: URI, TurnRestCredentials",
        ),
        ({"turn_servers": [("stun:127.0.0.1", "u", "p")]}, "give it in stun_servers"),
        ({"turn_tls_verify": "no"}, "turn_tls_verify must be True or False, not 'no'"),
        (
            {"turn_tls_cafile": "/nonexistent/ca.pem"},
            "turn_tls_cafile '/nonexistent/ca.pem': No such file or directory",
        ),
        ({"turn_tls_cafile": 5}, "turn_tls_cafile must be a path, not 5"),
        ({"turn_servers": [("127.0.0.1", 3478, "", "p")]}, "the username must be a non-empty"),
        ({"mdns_timeout": -1}, "mdns_timeout must be a positive number of seconds, not -1"),
        ({"mdns_timeout": float("nan")}, "mdns_timeout must be a positive number of seconds"),
        ({"pacing": "fast"}, "pacing must be a number of seconds, not 'fast'"),
        ({"pacing": 0.001}, "pacing (Ta) must be between 5 ms and 1 s"),
        ({"components": 0}, "components must be 1 to 256, not 0"),
        ({"components": True}, "components must be a whole number, not True"),
        ({"receive_queue_size": 0}, "receive_queue_size must be at least 1, not 0"),
        ({"use_ipv4": "yes"}, "use_ipv4 must be True or False, not 'yes'"),
        ({"relay_only": 1}, "relay_only must be True or False, not 1"),
        ({"interfaces": "lo"}, "interfaces is a list: write interfaces=['lo']"),
        (
            {"interfaces": ["nosuch0"]},
            "interfaces: 'nosuch0': no usable address of this host matches it",
        ),
        (
            {"interfaces": ["127.0.0.1"], "include_loopback": False},
            "interfaces: '127.0.0.1': a loopback address; pass include_loopback=True to use it",
        ),
        (
            {"interfaces": ["127.0.0.1"], "use_ipv4": False, "use_ipv6": True},
            "interfaces: '127.0.0.1': its addresses are IPv4, which is turned off",
        ),
        ({"config": {"pacing": 0.01}}, "config must be an ice.AgentConfig"),
        ({"config": AgentConfig(streams=(1, 1))}, "a Connection carries one data stream"),
    ],
)
def test_a_wrong_argument_is_refused_at_the_call_saying_what_is_wanted(
    arguments: dict[str, Any], message: str
) -> None:
    options = {**LOOPBACK, **arguments}
    with pytest.raises(LocalProtocolError) as refused:
        Connection(True, **options)
    assert message in str(refused.value)


def test_an_unknown_interface_is_refused_with_the_ones_this_host_has() -> None:
    with pytest.raises(LocalProtocolError) as refused:
        Connection(True, interfaces=["nosuch0"])
    assert "here: lo 127.0.0.1" in str(refused.value)


def test_the_role_must_be_a_bool() -> None:
    """``Connection("no")`` was a controlling connection."""
    with pytest.raises(LocalProtocolError, match="controlling must be True or False, not 'no'"):
        Connection("no")  # type: ignore[arg-type]


def test_servers_as_pairs_text_and_uris() -> None:
    assert stun_servers(
        [
            ("stun.example.org", 3478),
            "192.0.2.1",
            "192.0.2.1:5000",
            "[2001:db8::1]:5001",
            "2001:db8::1",
            "stun:stun.example.org",
            "STUN:[2001:DB8::2]:5002",
        ]
    ) == [
        ("stun.example.org", 3478),
        ("192.0.2.1", 3478),
        ("192.0.2.1", 5000),
        ("2001:db8::1", 5001),
        ("2001:db8::1", 3478),
        ("stun.example.org", 3478),
        ("2001:db8::2", 5002),
    ]
    rest = TurnRestCredentials("shared secret", user="alice", ttl=600)
    assert turn_servers(
        [
            ("192.0.2.1", 3478, "user", "pw"),
            ("turn:192.0.2.1:5000?transport=udp", "user", "pw"),
            ("192.0.2.1:5001", "user", "pw"),
            ("turn:turn.example.org?transport=tcp", "user", "pw"),
            ("turns:[2001:db8::9]", rest),
            ("TURNS:192.0.2.1:443?transport=TCP", "user", "pw"),
        ]
    ) == [
        ("192.0.2.1", 3478, ("user", "pw"), UDP),
        ("192.0.2.1", 5000, ("user", "pw"), UDP),
        ("192.0.2.1", 5001, ("user", "pw"), UDP),
        ("turn.example.org", 3478, ("user", "pw"), TCP),
        ("2001:db8::9", 5349, rest, TLS),
        ("192.0.2.1", 443, ("user", "pw"), TLS),
    ]


def test_rest_credentials_are_the_turn_rest_api_s() -> None:
    """username "<expiry>:<user>", password base64(HMAC-SHA1(secret, username)): what coturn's
    use-auth-secret and our server's rest_secret accept."""
    username, password = TurnRestCredentials("north", user="alice", ttl=60).make(1_700_000_000.5)
    assert username == "1700000060:alice"
    assert password == rest_api_password(b"north", "1700000060:alice")
    assert TurnRestCredentials(b"north", ttl=60).make(100.0)[0] == "160"
    for wrong, message in (
        ({"secret": ""}, "the secret must be a non-empty string"),
        ({"secret": "s", "user": "a:b"}, "the user must be a string without ':'"),
        ({"secret": "s", "ttl": 0}, "ttl must be a positive number of seconds"),
    ):
        with pytest.raises(LocalProtocolError, match=message):
            TurnRestCredentials(**wrong)


def test_a_stun_uri_and_a_turn_uri_gather_from_real_servers() -> None:
    async def scenario() -> tuple[int, list[CandidateType]]:
        server, turn_port = await turn_server()
        async with server, StunServer() as stun:
            listener = await stun.listen("udp", "127.0.0.1", 0)
            connection = Connection(
                True,
                stun_servers=[f"stun:127.0.0.1:{listener.address.port}"],
                turn_servers=[(f"turn:127.0.0.1:{turn_port}", USER, PASSWORD)],
                **LOOPBACK,
            )
            async with connection:
                await connection.gather_candidates()
                types = [c.type for c in connection.local_candidates if c.transport == "udp"]
            return sum(stun.server.stats.counts.values()), types

    asked, types = run(scenario())
    assert asked >= 1  # the STUN server was asked (its srflx is the host address: redundant)
    assert types == [CandidateType.HOST, CandidateType.RELAYED]


def test_arguments_left_out_keep_the_configs_values() -> None:
    """``stun_servers``, ``turn_servers``, ``pacing``, ``local_username``/``local_password``
    and the one stream's ``components`` used to be replaced by the arguments' defaults even
    when left out (the config's STUN and TURN servers were never asked)."""

    async def scenario() -> tuple[int, list[CandidateType], AgentConfig]:
        server, turn_port = await turn_server()
        async with server, StunServer() as stun:
            listener = await stun.listen("udp", "127.0.0.1", 0)
            config = AgentConfig(
                stun_servers=(listener.address,),
                turn_servers=(
                    RelayServer(
                        address=Address("127.0.0.1", turn_port), username=USER, password=PASSWORD
                    ),
                ),
                pacing=0.01,
                streams=(2,),
                local_username="ourufrag",
                local_password="our-password-of-22-chars",
            )
            connection = Connection(True, config=config, **LOOPBACK)
            async with connection:
                await connection.gather_candidates()
                types = [c.type for c in connection.local_candidates if c.transport == "udp"]
                used = connection.agent.config
            return sum(stun.server.stats.counts.values()), types, used

    asked, types, used = run(scenario())
    assert asked >= 2  # one request per component's base
    assert sorted(types) == sorted([CandidateType.HOST, CandidateType.RELAYED] * 2)
    assert (used.pacing, used.streams) == (0.01, (2,))
    assert (used.local_username, used.local_password) == ("ourufrag", "our-password-of-22-chars")


def test_arguments_given_replace_the_configs_values() -> None:
    async def scenario() -> AgentConfig:
        config = AgentConfig(stun_servers=(Address("192.0.2.1", 3478),), pacing=0.01)
        connection = Connection(True, config=config, stun_servers=[], pacing=0.02, **LOOPBACK)
        async with connection:
            await asyncio.wait_for(connection.gather_candidates(), 5)
            return connection.agent.config

    used = run(scenario())
    assert (used.stun_servers, used.pacing) == ((), 0.02)


def test_the_agent_config_refuses_servers_and_roles_that_are_not_what_it_holds() -> None:
    with pytest.raises(LocalProtocolError, match="controlling must be True or False, not 'no'"):
        AgentConfig(controlling="no")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match=r"'stun\.example\.org' is not an IP address"):
        AgentConfig(stun_servers=(Address("stun.example.org", 3478),))
    with pytest.raises(LocalProtocolError, match="port 0 out of range"):
        AgentConfig(stun_servers=(Address("192.0.2.1", 0),))
    with pytest.raises(LocalProtocolError, match="ICE-lite peer must be controlling"):
        AgentConfig(controlling=False, remote_lite=True)  # refused here, not when gathering
    with pytest.raises(LocalProtocolError, match="holds RelayServer values"):
        AgentConfig(turn_servers=(("192.0.2.1", 3478, "u", "p"),))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="a TURN server: port 70000 out of range"):
        RelayServer(address=Address("192.0.2.1", 70000), username="u", password="p")
    assert AgentConfig(stun_servers=(("2001:DB8::1", 3478),)).stun_servers == (  # type: ignore[arg-type]
        Address("2001:db8::1", 3478),
    )


def test_data_credentials_and_candidates_of_the_wrong_type_are_refused_at_the_call() -> None:
    """``send("hello")`` over a relayed pair used to be queued, then fail with a TypeError when
    the datagram was wrapped for the TURN server — inside the connection's next pump, every
    pump after it too. Now it is refused at the call, on a direct pair and a relayed one
    alike, and the pair carries bytes on."""

    async def scenario() -> None:
        server, port = await turn_server()
        async with server:
            for relay in (False, True):
                a, b = (
                    relay_only(c, port) if relay else Connection(c, **LOOPBACK)
                    for c in (True, False)
                )
                async with a, b:
                    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
                    with pytest.raises(LocalProtocolError, match=r"takes an ice\.Candidate"):
                        await a.add_remote_candidate("1 1 udp 1 127.0.0.1 9 typ host")  # type: ignore[arg-type]
                    with pytest.raises(LocalProtocolError, match="pwd must be a non-empty str"):
                        a.set_remote_credentials(b.local_username, 1234)  # type: ignore[arg-type]
                    with pytest.raises(LocalProtocolError, match="ufrag must be a non-empty str"):
                        a.remote_username = ""
                    await exchange(a, b)
                    await connect(a, b)
                    with pytest.raises(LocalProtocolError, match="data must be bytes, not str"):
                        await a.send("hello")  # type: ignore[arg-type]
                    await round_trip(a, b, b"\x80bytes still go")
                    await a.send(bytearray(b"\x80a bytearray too"))
                    assert await asyncio.wait_for(b.recv(), 5) == b"\x80a bytearray too"

    run(scenario())
