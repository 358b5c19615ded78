"""Real processes across real NATs: network namespaces built by :mod:`tests.net.netns`.

Our STUN server runs in the ``pub`` namespace; clients and ICE agents run in ``host-a`` and
``host-b``, each behind an ``iptables`` MASQUERADE router (IPv4) or routed without NAT (IPv6):

- ``icestack stun`` from each host reports its NAT's public address (and, over IPv6, itself);
- ICE through both NATs via srflx, with ``icestack ice offer|answer`` (the lines relayed by the
  test) and with :class:`ice.Connection` in :mod:`tests.net.ns_agent`; IPv6 only; dual stack;
- aioice 0.13 (:mod:`tests.net.aioice_agent`) against our agent in both roles, and against
  itself as a control that the network lets an independent implementation through.

Needs root (skipped with the reason otherwise). Every process is bounded by a timeout and stopped
by its PID when its test ends.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

import ice

from .netns import (
    HOST_A_IPV4,
    HOST_A_IPV6,
    HOST_B_IPV4,
    HOST_B_IPV6,
    NAT_A_WAN,
    NAT_B_WAN,
    ROLES,
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
    with net.start_python(
        role, "-m", "ice.cli", "stun", target, "--json", "--timeout", "5", name=f"stun@{role}"
    ) as probe:
        status = probe.wait(PROCESS_TIMEOUT)
        output = "\n".join(probe.remaining_output())
    assert status == 0, f"{probe.describe()}\n{output}"
    report: dict[str, Any] = json.loads(output)
    return report


# ------------------------------------------------------------------ the network itself

#: The only ranges a namespace address may come from besides loopback and link-local
#: (documentation ranges: RFC 5737, RFC 3849).
DOCUMENTATION_RANGES = [
    ipaddress.ip_network(prefix)
    for prefix in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]


def test_network_is_sealed_and_uses_documentation_addresses(dual_net: Network) -> None:
    """Every link's other end is in one of this network's namespaces (none in the machine's own,
    so nothing can leave), and every routable address is a documentation address."""
    for role in ROLES:
        for line in dual_net.run(role, "ip", "-o", "link", "show").splitlines():
            device = line.split(":")[1].strip().split("@")[0]
            if device not in {"lo", "br0"}:
                peer = re.search(r"link-netns (\S+)", line)
                assert peer is not None, line
                assert peer[1] in {dual_net.namespace(other) for other in ROLES}, line
        for line in dual_net.run(role, "ip", "-o", "address", "show").splitlines():
            address = ipaddress.ip_interface(line.split()[3]).ip
            if not (address.is_loopback or address.is_link_local):
                assert any(address in allowed for allowed in DOCUMENTATION_RANGES), line


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

#: The agent scripts (``python -m MODULE NAME --controlling|--controlled --stun HOST:PORT``).
OUR_AGENT = "tests.net.ns_agent"
AIOICE_AGENT = "tests.net.aioice_agent"


@dataclass(frozen=True)
class AgentRun:
    """What one agent signalled (its description) and reported at the end (its result)."""

    description: dict[str, Any]
    result: dict[str, Any]

    def candidates(self) -> list[ice.Candidate]:
        return [ice.Candidate.from_sdp(line) for line in self.description["candidates"]]

    @property
    def local(self) -> dict[str, Any]:
        local: dict[str, Any] = self.result["selected"]["local"]
        return local

    @property
    def remote(self) -> dict[str, Any]:
        remote: dict[str, Any] = self.result["selected"]["remote"]
        return remote


def connect_agents(
    net: Network,
    agent_a: str,
    agent_b: str,
    stun: str,
    *,
    a_controls: bool = True,
    roles: tuple[str, str] = ("host-a", "host-b"),
    options: tuple[str, ...] = (),
    a_options: tuple[str, ...] = (),
    b_options: tuple[str, ...] = (),
    succeed: bool = True,
) -> tuple[AgentRun, AgentRun]:
    """Run agent A in host-a and agent B in host-b (or in ``roles``; JSON-lines agent scripts,
    see :mod:`tests.net.ns_agent`, given ``options`` too, and each its own ``a_options`` or
    ``b_options``), A controlling unless ``a_controls``
    is false; relay each one's description to the other; return both runs once both have
    exited, with status 0 unless ``succeed`` is false (then their error lines are the
    results)."""
    with ExitStack() as stack:
        processes = [
            stack.enter_context(net.start_python(
                role, "-m", agent, name, "--controlling" if controls else "--controlled",
                "--stun", stun, *options, *own, name=f"{agent}@{role}",
            ))
            for role, agent, name, controls, own in (
                (roles[0], agent_a, "A", a_controls, a_options),
                (roles[1], agent_b, "B", not a_controls, b_options),
            )
        ]  # fmt: skip
        descriptions = [json.loads(process.read_line(PROCESS_TIMEOUT)) for process in processes]
        for process, description in zip(processes, reversed(descriptions), strict=True):
            process.write_line(json.dumps(description))
        runs = []
        for process, description in zip(processes, descriptions, strict=True):
            status = process.wait(PROCESS_TIMEOUT)
            lines = process.remaining_output()
            assert (status == 0) is succeed, f"{process.describe()}\n{lines}"
            runs.append(AgentRun(description, json.loads(lines[-1])))
    return runs[0], runs[1]


#: Where each host's IPv4 packets appear on the WAN: its NAT's address (MASQUERADE keeps the port
#: here: each host has few sockets, so no two compete for one).
PUBLIC_IPV4 = {HOST_A_IPV4: NAT_A_WAN, HOST_B_IPV4: NAT_B_WAN}


def endpoint(candidate: dict[str, Any]) -> tuple[str, int]:
    return candidate["host"], candidate["port"]


def as_seen_from_outside(candidate: dict[str, Any]) -> tuple[str, int]:
    """Where packets sent from a local candidate come from, as the peer sees them."""
    return PUBLIC_IPV4.get(candidate["host"], candidate["host"]), candidate["port"]


def assert_same_path(a: AgentRun, b: AgentRun) -> None:
    """Both agents selected the same path (each one's remote is where the other's local appears
    from outside) and each received the other's hello over it."""
    assert endpoint(a.remote) == as_seen_from_outside(b.local)
    assert endpoint(b.remote) == as_seen_from_outside(a.local)
    assert a.result["received"] == "hello from B"
    assert b.result["received"] == "hello from A"


def test_control_two_aioice_agents_punch_through_both_nats(ipv4_net: Network) -> None:
    """The network itself, checked with a third-party agent on both sides: aioice reaches the
    other host only through the NATs' public addresses."""
    a, b = connect_agents(ipv4_net, AIOICE_AGENT, AIOICE_AGENT, STUN_V4_TARGET)

    assert_same_path(a, b)
    assert a.remote["host"] == NAT_B_WAN
    assert b.remote["host"] == NAT_A_WAN


def types(run: AgentRun) -> dict[str, set[str]]:
    """The hosts of the candidates ``run`` signalled, by candidate type."""
    by_type: dict[str, set[str]] = {}
    for candidate in run.candidates():
        by_type.setdefault(candidate.type.value, set()).add(candidate.host)
    return by_type


def test_ice_through_two_nats_via_srflx(ipv4_net: Network) -> None:
    """Host candidates cannot reach across (``pub`` does not route the LANs); each agent learns
    its NAT's address from the STUN server and the checks punch through both NATs."""
    a, b = connect_agents(ipv4_net, OUR_AGENT, OUR_AGENT, STUN_V4_TARGET)

    assert types(a) == {"host": {HOST_A_IPV4}, "srflx": {NAT_A_WAN}}
    assert types(b) == {"host": {HOST_B_IPV4}, "srflx": {NAT_B_WAN}}
    assert_same_path(a, b)
    # The peer's check can only pass its NAT after the peer has sent its own checks, which it does
    # once it has the signalled candidates: the remote end is never learnt as peer-reflexive.
    assert (a.remote["type"], a.remote["host"]) == ("srflx", NAT_B_WAN)
    assert (b.remote["type"], b.remote["host"]) == ("srflx", NAT_A_WAN)


def test_an_ice_lite_server_behind_a_1to1_nat_offers_its_public_address(
    ipv4_net: Network,
) -> None:
    """A cloud VM: host-a's router maps its public address 1:1 to host-a (every UDP port of
    NAT_A_WAN forwarded, sources masqueraded with their ports kept). The ICE-lite server there
    offers its host candidates with NAT_A_WAN (``advertised_addresses``), not its private
    address, which nobody outside can reach; a lite server sends no checks, so the client in
    ``pub`` connects only through the advertised address."""
    dnat = (
        "-t", "nat", "PREROUTING", "-i", "wan0", "-d", NAT_A_WAN, "-p", "udp",
        "-j", "DNAT", "--to-destination", HOST_A_IPV4,
    )  # fmt: skip
    table, chain, rule = dnat[:2], dnat[2], dnat[3:]
    ipv4_net.run("nat-a", "iptables", *table, "-I", chain, *rule)
    try:
        server, client = connect_agents(
            ipv4_net, OUR_AGENT, OUR_AGENT, STUN_V4_TARGET,
            a_controls=False, roles=("host-a", "pub"),
            options=("--no-tcp",),
            a_options=("--lite", "--advertise", NAT_A_WAN),
            b_options=("--remote-lite",),
        )  # fmt: skip
    finally:
        ipv4_net.run("nat-a", "iptables", *table, "-D", chain, *rule)
    assert types(server) == {"host": {NAT_A_WAN}}
    assert client.remote["host"] == NAT_A_WAN and client.remote["type"] == "host"
    assert client.result["received"] == "hello from A"
    assert server.result["received"] == "hello from B"


def run_ice_cli(net: Network, stun: str) -> tuple[dict[str, str], dict[str, str]]:
    """``icestack ice offer`` in host-a and ``icestack ice answer`` in host-b, their
    ``icestack1:`` lines relayed; both reports (``name  value`` rows) once both exited 0."""
    options = ("--stun", stun, "--timeout", "10", "--wait", "10", "--count", "3")
    with (
        net.start_python("host-a", "-m", "ice.cli", "ice", "offer", *options, name="offer")
        as offer,
        net.start_python("host-b", "-m", "ice.cli", "ice", "answer", *options, name="answer")
        as answer,
    ):
        answer.write_line(offer.read_until("icestack1:", PROCESS_TIMEOUT))
        offer.write_line(answer.read_until("icestack1:", PROCESS_TIMEOUT))
        reports = []
        for process in (offer, answer):
            status = process.wait(PROCESS_TIMEOUT)
            lines = process.remaining_output()
            assert status == 0, f"{process.describe()}\n{lines}"
            rows = (re.split(r"\s{2,}", line, maxsplit=1) for line in lines)
            reports.append({row[0]: row[1] for row in rows if len(row) == 2})
    return reports[0], reports[1]


def cli_candidate(text: str) -> dict[str, Any]:
    """A report's ``srflx 203.0.113.2:40000`` (or ``host [2001:db8::1]:40000``) as a dict."""
    candidate_type, address = text.split()
    host, _, port = address.rpartition(":")
    return {"type": candidate_type, "host": host.strip("[]"), "port": int(port)}


def test_ice_cli_offer_and_answer_through_two_nats(ipv4_net: Network) -> None:
    """The two-terminal tool, with the test pasting the lines: both ends report the same
    srflx-to-srflx path through both NATs and an echo that came back."""
    offer, answer = run_ice_cli(ipv4_net, STUN_V4_TARGET)

    for report in (offer, answer):
        assert report["result"].startswith("connected in ")
        assert report["path"] == "srflx-srflx"
        answered = re.search(r"\((\d)/3 answered\)", report["echo rtt"])
        assert answered is not None and int(answered[1]) >= 1, report["echo rtt"]
    offer_local, offer_remote = cli_candidate(offer["local"]), cli_candidate(offer["remote"])
    answer_local, answer_remote = cli_candidate(answer["local"]), cli_candidate(answer["remote"])
    assert (offer_local["host"], offer_remote["host"]) == (NAT_A_WAN, NAT_B_WAN)
    assert endpoint(offer_remote) == endpoint(answer_local)
    assert endpoint(answer_remote) == endpoint(offer_local)


def test_ice_over_routed_ipv6_only(ipv6_net: Network) -> None:
    """Without NAT66 the STUN server sees each host's own address, so the srflx candidate equals
    the host candidate and is dropped as redundant (RFC 8445 §5.1.3): host to host it is."""
    a, b = connect_agents(ipv6_net, OUR_AGENT, OUR_AGENT, STUN_V6_TARGET)

    assert types(a) == {"host": {HOST_A_IPV6}}
    assert types(b) == {"host": {HOST_B_IPV6}}
    assert_same_path(a, b)
    assert (a.local["type"], a.local["host"]) == ("host", HOST_A_IPV6)
    assert (b.local["type"], b.local["host"]) == ("host", HOST_B_IPV6)
    # Either side may receive the other's first check before it has added the signalled
    # candidates; it then knows that address as peer-reflexive (RFC 8445 §7.3.1.3).
    assert a.remote["type"] in {"host", "prflx"}
    assert b.remote["type"] in {"host", "prflx"}


def test_ice_dual_stack_selects_ipv6(dual_net: Network) -> None:
    """Both families work (IPv4 through the NATs, IPv6 routed); the selected pair is IPv6 host to
    host: host candidates outrank srflx by type preference (126 over 100, RFC 8445 §5.1.2.2), and
    among host candidates RFC 8421's local preference puts IPv6 first."""
    a, b = connect_agents(dual_net, OUR_AGENT, OUR_AGENT, STUN_V4_TARGET)

    assert types(a) == {"host": {HOST_A_IPV4, HOST_A_IPV6}, "srflx": {NAT_A_WAN}}
    assert types(b) == {"host": {HOST_B_IPV4, HOST_B_IPV6}, "srflx": {NAT_B_WAN}}
    for run in (a, b):
        best = max(run.candidates(), key=lambda candidate: candidate.priority)
        assert best.host in {HOST_A_IPV6, HOST_B_IPV6} and best.transport == "udp"
    assert_same_path(a, b)
    assert (a.local["type"], a.local["host"]) == ("host", HOST_A_IPV6)
    assert (b.local["type"], b.local["host"]) == ("host", HOST_B_IPV6)
    assert (a.remote["host"], b.remote["host"]) == (HOST_B_IPV6, HOST_A_IPV6)


@pytest.mark.parametrize(
    "ours_controls", [True, False], ids=["ours-controlling", "ours-controlled"]
)
def test_ice_with_aioice_through_both_nats(ipv4_net: Network, ours_controls: bool) -> None:
    """Our agent in host-a, aioice 0.13 in host-b (it lists the namespace's interfaces itself with
    ifaddr and gathers srflx from our STUN server): they agree on the path through both NATs."""
    a, b = connect_agents(
        ipv4_net, OUR_AGENT, AIOICE_AGENT, STUN_V4_TARGET, a_controls=ours_controls
    )

    assert types(a) == {"host": {HOST_A_IPV4}, "srflx": {NAT_A_WAN}}
    assert types(b) == {"host": {HOST_B_IPV4}, "srflx": {NAT_B_WAN}}
    assert_same_path(a, b)
    assert (a.remote["host"], b.remote["host"]) == (NAT_B_WAN, NAT_A_WAN)
