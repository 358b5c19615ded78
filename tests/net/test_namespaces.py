"""Real processes across real NATs: network namespaces built by :mod:`tests.net.netns`.

Our STUN server runs in the ``pub`` namespace; clients and ICE agents run in ``host-a`` and
``host-b``, each behind an ``iptables`` MASQUERADE router (IPv4) or routed without NAT (IPv6).
Needs root (skipped with the reason otherwise). Every process is bounded by a timeout and stopped
by its PID when its network is torn down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .netns import (
    HOST_A_IPV4,
    HOST_A_IPV6,
    HOST_B_IPV4,
    HOST_B_IPV6,
    NAT_A_WAN,
    NAT_B_WAN,
    STUN_IPV4,
    STUN_IPV6,
    Network,
    network,
)

pytestmark = pytest.mark.netns

#: The bound on any one process started by a test: generous, so that only a hang can reach it.
PROCESS_TIMEOUT = 20.0
STUN_PORT = 3478
STUN_V4_TARGET = f"{STUN_IPV4}:{STUN_PORT}"
STUN_V6_TARGET = f"[{STUN_IPV6}]:{STUN_PORT}"


def _with_stun_server(net: Network) -> Network:
    """Start ``icestack serve stun`` in ``pub`` on every address family; wait until it listens."""
    targets = ([STUN_V4_TARGET] if net.ipv4 else []) + ([STUN_V6_TARGET] if net.ipv6 else [])
    server = net.start_python(
        "pub", "-m", "ice.cli", "serve", "stun",
        *(argument for target in targets for argument in ("--listen", target)),
        name="stun-server",
    )  # fmt: skip
    for _ in targets:
        assert server.read_line(PROCESS_TIMEOUT).startswith("listening on udp ")
    return net


@pytest.fixture(scope="module")
def ipv4_net() -> Iterator[Network]:
    """IPv4 only: each host behind its NAT, the STUN server on the public side."""
    with network(ipv4=True, ipv6=False) as net:
        yield _with_stun_server(net)


@pytest.fixture(scope="module")
def ipv6_net() -> Iterator[Network]:
    """IPv6 only: every host globally addressed and routed, no NAT66."""
    with network(ipv4=False, ipv6=True) as net:
        yield _with_stun_server(net)


@pytest.fixture(scope="module")
def dual_net() -> Iterator[Network]:
    """Both: IPv4 behind the NATs and IPv6 routed, on the same interfaces."""
    with network(ipv4=True, ipv6=True) as net:
        yield _with_stun_server(net)


def stun_probe(net: Network, role: str, target: str) -> dict[str, Any]:
    """Run ``icestack stun TARGET --json`` in ``role``'s namespace; its JSON report."""
    probe = net.start_python(
        role, "-m", "ice.cli", "stun", target, "--json", "--timeout", "5", name=f"stun@{role}"
    )
    status = probe.wait(PROCESS_TIMEOUT)
    output = "\n".join(probe.remaining_output())
    assert status == 0, f"{probe.describe()}\n{output}"
    report: dict[str, Any] = json.loads(output)
    return report


# ------------------------------------------------------------------ STUN through the NATs


@pytest.mark.parametrize(
    ("role", "public_address", "lan_address"),
    [("host-a", NAT_A_WAN, HOST_A_IPV4), ("host-b", NAT_B_WAN, HOST_B_IPV4)],
)
def test_stun_reports_the_nat_public_address(
    ipv4_net: Network, role: str, public_address: str, lan_address: str
) -> None:
    report = stun_probe(ipv4_net, role, STUN_V4_TARGET)

    assert report["ok"] is True
    assert report["server"] == {"host": STUN_IPV4, "port": STUN_PORT}
    assert report["mapped_address"]["host"] == public_address
    assert report["mapped_address"]["host"] != lan_address


@pytest.mark.parametrize(("role", "address"), [("host-a", HOST_A_IPV6), ("host-b", HOST_B_IPV6)])
def test_stun_over_routed_ipv6_reports_the_host_itself(
    dual_net: Network, role: str, address: str
) -> None:
    report = stun_probe(dual_net, role, STUN_V6_TARGET)

    assert report["ok"] is True
    assert report["mapped_address"]["host"] == address
