"""Real processes across real NATs: network namespaces built by :mod:`tests.net.netns`.

Our STUN server runs in the ``pub`` namespace; clients and ICE agents run in ``host-a`` and
``host-b``, each behind an ``iptables`` MASQUERADE router (IPv4) or routed without NAT (IPv6).
Needs root (skipped with the reason otherwise). Every process is bounded by a timeout and stopped
by its PID when its network is torn down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
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


# ------------------------------------------------------------------ ICE agents in the namespaces

#: Each agent script's command line after ``python -m``; the role flag and name are added.
AIOICE_AGENT = ("tests.net.aioice_agent",)


def connect_agents(
    net: Network, agent_a: Sequence[str], agent_b: Sequence[str], stun: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a controlling agent in host-a and a controlled one in host-b (JSON-lines agent
    scripts, :mod:`tests.net.ns_agent`), relay each one's description to the other, and return
    both result documents once both have exited 0."""
    processes = [
        net.start_python(role, "-m", *agent, name, flag, "--stun", stun, name=f"{name}@{role}")
        for role, agent, name, flag in (
            ("host-a", agent_a, "A", "--controlling"),
            ("host-b", agent_b, "B", "--controlled"),
        )
    ]
    descriptions = [process.read_line(PROCESS_TIMEOUT) for process in processes]
    for process, description in zip(processes, reversed(descriptions), strict=True):
        process.write_line(description)
    results = []
    for process in processes:
        status = process.wait(PROCESS_TIMEOUT)
        lines = process.remaining_output()
        assert status == 0, f"{process.describe()}\n{lines}"
        results.append(json.loads(lines[-1]))
    return results[0], results[1]


#: Where each host's IPv4 packets appear on the WAN: its NAT's address (MASQUERADE keeps the port
#: here: each host has few sockets, so no two compete for one).
PUBLIC_IPV4 = {HOST_A_IPV4: NAT_A_WAN, HOST_B_IPV4: NAT_B_WAN}


def endpoint(candidate: dict[str, Any]) -> tuple[str, int]:
    return candidate["host"], candidate["port"]


def as_seen_from_outside(candidate: dict[str, Any]) -> tuple[str, int]:
    """Where packets sent from a local candidate come from, as the peer sees them."""
    return PUBLIC_IPV4.get(candidate["host"], candidate["host"]), candidate["port"]


def assert_same_path(result_a: dict[str, Any], result_b: dict[str, Any]) -> None:
    """Both agents selected the same path (each one's remote is where the other's local appears
    from outside) and each received the other's hello over it."""
    selected_a, selected_b = result_a["selected"], result_b["selected"]
    assert endpoint(selected_a["remote"]) == as_seen_from_outside(selected_b["local"])
    assert endpoint(selected_b["remote"]) == as_seen_from_outside(selected_a["local"])
    assert result_a["received"] == "hello from B"
    assert result_b["received"] == "hello from A"


def test_control_two_aioice_agents_punch_through_both_nats(ipv4_net: Network) -> None:
    """The network itself, checked with a third-party agent on both sides: aioice reaches the
    other host only through the NATs' public addresses."""
    result_a, result_b = connect_agents(ipv4_net, AIOICE_AGENT, AIOICE_AGENT, STUN_V4_TARGET)

    assert_same_path(result_a, result_b)
    assert result_a["selected"]["remote"]["host"] == NAT_B_WAN
    assert result_b["selected"]["remote"]["host"] == NAT_A_WAN
