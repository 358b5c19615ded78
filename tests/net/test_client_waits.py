"""Nothing a client waits for outlasts the caller's timeout, and a send this host refuses ends the
wait at once, with real sockets: a TCP connection whose SYNs a namespace's firewall drops, a TLS
listener that accepts and never speaks, a namespace with no route but loopback.

Each end is asserted by what raised and what it says — the client's own deadline
(:class:`stun.ConnectTimeout` naming the step) or the socket's refusal
(:class:`stun.ServerUnreachable`) — never by how long it took: the kernel would have ended the
TCP attempt with ``TimeoutError: [Errno 110]`` after two minutes, asyncio the handshake with
``ConnectionAbortedError`` after 60 s, and the UDP transaction with ``TransactionTimeout`` after
39.5 s. The bound on each subprocess and event loop only keeps a hang from stalling the suite.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from stun import ConnectTimeout
from stun.aio import StunClient, binding
from stun.client import ClientConfig
from stun.transaction import TransactionConfig
from tests.net import netns
from tests.net.loopback import run
from turn import TurnClient
from turn.client import TurnClientConfig

#: Only a hang reaches it: every case ends in about a second.
SUBPROCESS_TIMEOUT = 60.0
DROPPED_PORT = 34802


def outcomes(net: netns.Network, *argv: str) -> list[dict[str, Any]]:
    output = net.run(
        "solo", sys.executable, "-m", "tests.net.ns_client_waits", *argv,
        timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip
    return [json.loads(line) for line in output.splitlines()]


def test_a_tcp_connection_the_firewall_drops_ends_within_connect_timeout() -> None:
    with netns.solo() as net:
        try:
            net.run(
                "solo", "iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(DROPPED_PORT),
                "-j", "DROP",
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"iptables is not available in a namespace here: {exc.stderr!r}")
        results = outcomes(net, "tcp-connect", str(DROPPED_PORT))
    assert [r["client"] for r in results] == ["StunClient", "binding", "TurnClient"]
    for result in results:
        assert result["error"] == "stun.errors.ConnectTimeout", result
        assert result["message"] == (
            f"no answer to the TCP connection attempt to 127.0.0.1:{DROPPED_PORT} within 1 s"
        )


@pytest.mark.parametrize("host", ["192.0.2.1", "2001:db8::1"])
def test_a_udp_send_with_no_route_ends_the_transaction_at_once(host: str) -> None:
    """The default schedule would retransmit for 39.5 s; the first sendto() already said
    ENETUNREACH, and the Binding request and the Allocate end with it."""
    with netns.solo() as net:
        results = outcomes(net, "unreachable", host)
    assert [r["client"] for r in results] == ["binding", "TurnClient"]
    shown = f"[{host}]" if ":" in host else host
    for result in results:
        assert result["error"] == "stun.errors.ServerUnreachable", result
        assert result["message"] == (
            f"network unreachable from this host: cannot send to {shown}:3478 "
            "(Network is unreachable)"
        )


def test_the_demo_says_at_once_that_loopback_is_down() -> None:
    with netns.solo(loopback=False) as net:
        completed = subprocess.run(
            ["ip", "netns", "exec", net.namespace("solo"), sys.executable, "-m", "ice.cli",
             "demo"],
            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False,
            cwd=netns.REPO_ROOT,
        )  # fmt: skip
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""
    assert completed.stderr.splitlines() == [
        "icestack: error: the loopback interface is down: this host cannot send to itself "
        "(127.0.0.1: Network is unreachable); the demo runs on loopback only: bring it up "
        "(ip link set lo up)"
    ]


# --------------------------------------------------------------------------- TLS


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP listener on loopback that accepts connections (the kernel does) and never speaks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def tls_attempts(port: int, **timeout: Any) -> dict[str, Callable[[], Awaitable[object]]]:
    """Each client's TLS connect to ``port``, with ``timeout`` (connect_timeout or a config)."""

    async def stun_client() -> None:
        await (await StunClient.connect("127.0.0.1", port, transport="tls", **timeout)).close()

    async def turn_client() -> None:
        client = await TurnClient.connect(
            "127.0.0.1", port, transport="tls", username="alice", password="wonderland", **timeout
        )
        await client.close()

    return {
        "StunClient": stun_client,
        "binding": lambda: binding("127.0.0.1", port, transport="tls", **timeout),
        "TurnClient": turn_client,
    }


def test_a_tls_handshake_that_never_starts_ends_within_connect_timeout() -> None:
    async def scenario() -> None:
        with silent_listener() as port:
            for name, attempt in tls_attempts(port, connect_timeout=0.5).items():
                with pytest.raises(ConnectTimeout) as raised:
                    await attempt()
                assert str(raised.value) == (
                    f"127.0.0.1:{port} accepted the TCP connection but the TLS handshake did not "
                    "finish within 0.5 s"
                ), name
                assert isinstance(raised.value, TimeoutError)  # what a failed connect raises

    run(scenario())


def test_without_connect_timeout_the_bound_is_the_transactions_ti() -> None:
    """No connect_timeout: connecting gets what a whole transaction over TCP may take (Ti,
    RFC 8489 §6.2.2), from the client's config — 39.5 s by default, 0.5 s here."""
    stun_config = ClientConfig(transaction=TransactionConfig(reliable_timeout=0.5))
    turn_config = TurnClientConfig(stun=stun_config)
    expected = "TLS handshake did not finish within 0.5 s"

    async def scenario() -> None:
        with silent_listener() as port:
            with pytest.raises(ConnectTimeout, match=expected):
                await tls_attempts(port, config=stun_config)["StunClient"]()
            with pytest.raises(ConnectTimeout, match=expected):
                await tls_attempts(port, config=turn_config)["TurnClient"]()

    run(scenario())


def test_connect_timeout_covers_resolving_too() -> None:
    """In a namespace whose resolver (ip netns exec's /etc/netns/NAME/resolv.conf) is a
    loopback address the firewall drops DNS to, the C library would wait 5 s per try; the
    clients give up when connect_timeout says, naming the step."""
    with netns.solo() as net:
        try:
            net.run(
                "solo", "iptables", "-A", "INPUT", "-p", "udp", "--dport", "53", "-j", "DROP",
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"iptables is not available in a namespace here: {exc.stderr!r}")
        with netns.resolver(net, "solo", "127.0.0.1"):
            results = outcomes(net, "resolve", "stun.example.net")
    assert [r["client"] for r in results] == ["StunClient", "TurnClient"]
    for result in results:
        assert result["error"] == "stun.errors.ConnectTimeout", result
        assert result["message"] == "resolving 'stun.example.net' took longer than 1 s"
