"""ICE-TCP (RFC 6544) across real namespaces where iptables drops every UDP packet.

- ``host-a`` behind its ``iptables`` NAT, whose router forwards no UDP at all, and an agent on
  the public side (the ``pub`` namespace): they connect over TCP, ``host-a`` from its active
  candidate through the NAT to the public passive candidate, and the public agent sees it as a
  peer-reflexive candidate at the NAT's address and the port the connection came from; in both
  roles. The negative control — the same agents with ICE-TCP off — must fail, which proves the
  block.
- Two hosts on one link, each dropping every UDP packet in and out: they connect over TCP.
- An ICE-lite server on a shared-port mux on the public side, reached over the mux's TCP port.

Agents are :mod:`tests.net.ns_agent` processes (one :class:`ice.Connection` each), signalled
through the test. Needs root (skipped with the reason otherwise); documentation addresses only;
every process bounded and stopped by its PID.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .netns import LINK_IPV4, NAT_A_WAN, STUN_IPV4, Network, link, network
from .test_namespaces import (
    OUR_AGENT,
    STUN_V4_TARGET,
    AgentRun,
    _with_stun_server,
    connect_agents,
    endpoint,
)

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def udp_blocked_net() -> Iterator[Network]:
    """IPv4, the STUN server on ``pub``, and ``nat-a`` forwarding no UDP either way."""
    with network(ipv4=True, ipv6=False) as net:
        _with_stun_server(net)
        net.run("nat-a", "iptables", "-I", "FORWARD", "-p", "udp", "-j", "DROP")
        yield net


def udp_dropped(net: Network, role: str) -> int:
    """How many UDP packets ``role``'s firewall dropped (the FORWARD rule's counter)."""
    listing = net.run(role, "iptables", "-L", "FORWARD", "-v", "-n", "-x")
    [rule] = [fields for line in listing.splitlines() if (fields := line.split())[2:3] == ["DROP"]]
    assert rule[3] in ("udp", "17"), listing  # iptables-nft names the protocol by number
    return int(rule[0])


def assert_over_tcp(active: AgentRun, passive: AgentRun) -> None:
    """``active`` connected from its active candidate to ``passive``'s passive one."""
    for run in (active, passive):
        assert run.local["transport"] == run.remote["transport"] == "tcp", run.result
    assert (active.local["tcptype"], active.remote["tcptype"]) == ("active", "passive")
    assert passive.local["tcptype"] == "passive"
    assert (passive.remote["type"], passive.remote["tcptype"]) == ("prflx", "active")
    assert endpoint(active.remote) == endpoint(passive.local)
    assert passive.remote["port"] != 9
    assert {active.result["received"], passive.result["received"]} == {
        "hello from A",
        "hello from B",
    }


@pytest.mark.parametrize("nated_controls", [True, False], ids=["nated-controls", "public-controls"])
def test_udp_blocked_behind_a_nat_connects_over_tcp(
    udp_blocked_net: Network, nated_controls: bool
) -> None:
    before = udp_dropped(udp_blocked_net, "nat-a")
    a, b = connect_agents(
        udp_blocked_net, OUR_AGENT, OUR_AGENT, STUN_V4_TARGET,
        a_controls=nated_controls, roles=("host-a", "pub"),
    )  # fmt: skip
    assert_over_tcp(a, b)
    assert b.local["host"] == STUN_IPV4  # the public agent's passive candidate...
    assert b.remote["host"] == NAT_A_WAN  # ...and the NAT's address, as the connection came
    assert udp_dropped(udp_blocked_net, "nat-a") > before  # the checks over UDP did try


def test_without_ice_tcp_the_same_agents_fail(udp_blocked_net: Network) -> None:
    """The negative control: with TCP candidates switched off, nothing gets through."""
    a, b = connect_agents(
        udp_blocked_net, OUR_AGENT, OUR_AGENT, STUN_V4_TARGET,
        roles=("host-a", "pub"), options=("--no-tcp",), succeed=False,
    )  # fmt: skip
    for run in (a, b):
        assert "error" in run.result
        assert all(" udp " in line for line in run.description["candidates"])


def test_an_ice_lite_server_on_a_mux_is_reached_over_tcp(udp_blocked_net: Network) -> None:
    """A server on the public side serving from a :class:`~ice.aio_mux.Mux` (ICE-lite), a client
    behind the NAT that forwards no UDP: the client connects to the mux's one TCP port."""
    client, server = connect_agents(
        udp_blocked_net, OUR_AGENT, OUR_AGENT, STUN_V4_TARGET,
        roles=("host-a", "pub"), a_options=("--remote-lite",),
        b_options=("--lite", "--mux", STUN_IPV4),
    )  # fmt: skip
    assert_over_tcp(client, server)
    # The server offered exactly the mux's two ports: one UDP, one passive TCP candidate.
    offered = server.description["candidates"]
    assert [(" udp " in line, "tcptype passive" in line) for line in offered] == [
        (True, False),
        (False, True),
    ]


@pytest.fixture(scope="module")
def udp_blocked_link() -> Iterator[Network]:
    """Two hosts on one link, each dropping UDP in and out (iptables INPUT and OUTPUT)."""
    with link(ipv6=False) as net:
        for role in ("left", "right"):
            for chain in ("INPUT", "OUTPUT"):
                net.run(role, "iptables", "-A", chain, "-p", "udp", "-j", "DROP")
        yield net


def test_two_hosts_that_drop_all_udp_connect_over_tcp(udp_blocked_link: Network) -> None:
    nowhere = f"{LINK_IPV4['left']}:3478"  # no STUN server: its requests are dropped anyway
    a, b = connect_agents(udp_blocked_link, OUR_AGENT, OUR_AGENT, nowhere, roles=("left", "right"))
    for run in (a, b):
        assert run.local["transport"] == run.remote["transport"] == "tcp", run.result
    assert {a.local["tcptype"], b.local["tcptype"]} == {"active", "passive"}
    assert {a.remote["host"], b.remote["host"]} == set(LINK_IPV4.values())
    assert a.result["received"] == "hello from B" and b.result["received"] == "hello from A"
