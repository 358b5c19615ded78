"""The NAT-by-NAT matrix (architecture.md §5 tier 2): two full agents, host and server-reflexive
candidates only (no TURN), one behind each kind of NAT, the real STUN server on the WAN.

Agent A (controlling) sits behind the row's NAT, agent B (controlled) behind the column's; both
gather, exchange everything through the test (non-trickle) and check. The table says whether they
connect, the candidate types of A's selected pair (``local-remote``; B's is the mirror image) and
the virtual seconds from the start of checks until both agents are connected.

Why the three failures fail (RFC 4787). A symmetric NAT maps address-and-port-dependently (§4.1):
the mapping its host gets towards the peer is not the one the STUN server saw, so its srflx
candidate is useless to the peer, and its checks leave from a port the peer never heard of. Its
filtering is address-and-port-dependent too (§5): the srflx mapping admits only the STUN server,
so the peer's checks to it are dropped. The far side can still let the symmetric side in if its own
filter looks at the address only (restricted, full cone) — the check then arrives as a
peer-reflexive candidate and the triggered check back leaves through the new mapping the symmetric
NAT opened — but a port-restricted or symmetric NAT admits only the exact address and port its
host sent to, which is the useless srflx port. So symmetric-by-symmetric and symmetric-by-
port-restricted need a relay (TURN). Every other pair connects: endpoint-independent mapping makes
the srflx candidate the address checks come from, and the first check each way opens the filter
for the other side's retransmissions.

Why most times are about one second. Each side's host candidate is a private address the other
cannot reach; that pair has the highest priority and is In-Progress until its transaction times
out (39.5 s), so regular nomination waits ``max_nomination_wait`` (1 s) after the first valid pair
before it settles for the best one it has. Public peers (a ``none`` column) have no such pair.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ice.candidate import CandidateType, TcpType
from ice.checklist import CandidatePair
from ice.events import IceState
from ice.netsim import DropReason, NatBehavior
from ice.scenarios import (
    FIRST_PORT,
    Outcome,
    format_matrix,
    nat_matrix,
    pair_types,
    two_agents_behind_nats,
)
from stun.address import Address
from turn.transport import ClientTransport

NONE = NatBehavior.OPEN
FULL = NatBehavior.FULL_CONE
RESTRICTED = NatBehavior.RESTRICTED_CONE
PORT = NatBehavior.PORT_RESTRICTED_CONE
SYMMETRIC = NatBehavior.SYMMETRIC
FAILS = None

#: (A's NAT, B's NAT) -> (types of A's selected pair, virtual connect time), or FAILS.
EXPECTED: dict[tuple[NatBehavior, NatBehavior], tuple[str, float] | None] = {
    (NONE, NONE): ("host-host", 0.040),
    (NONE, FULL): ("host-srflx", 0.094),
    (NONE, RESTRICTED): ("host-srflx", 0.094),
    (NONE, PORT): ("host-srflx", 0.094),
    (NONE, SYMMETRIC): ("host-prflx", 0.094),
    (FULL, NONE): ("srflx-host", 0.072),
    (FULL, FULL): ("srflx-srflx", 0.098),
    (FULL, RESTRICTED): ("srflx-srflx", 0.098),
    (FULL, PORT): ("srflx-srflx", 0.098),
    (FULL, SYMMETRIC): ("srflx-prflx", 0.148),
    (RESTRICTED, NONE): ("srflx-host", 0.072),
    (RESTRICTED, FULL): ("srflx-srflx", 0.098),
    (RESTRICTED, RESTRICTED): ("srflx-srflx", 0.098),
    (RESTRICTED, PORT): ("srflx-srflx", 0.098),
    (RESTRICTED, SYMMETRIC): ("srflx-prflx", 0.148),
    (PORT, NONE): ("srflx-host", 0.072),
    (PORT, FULL): ("srflx-srflx", 0.098),
    (PORT, RESTRICTED): ("srflx-srflx", 0.098),
    (PORT, PORT): ("srflx-srflx", 0.098),
    (PORT, SYMMETRIC): FAILS,
    (SYMMETRIC, NONE): ("prflx-host", 0.072),
    (SYMMETRIC, FULL): ("prflx-srflx", 0.124),
    (SYMMETRIC, RESTRICTED): ("prflx-srflx", 0.124),
    (SYMMETRIC, PORT): FAILS,
    (SYMMETRIC, SYMMETRIC): FAILS,
}

#: UDP blocked at A's edge (a firewall drops every UDP datagram to and from A's NAT, or A itself):
#: (A's NAT, B's NAT) -> (types of A's selected pair, virtual connect time), or FAILS. Only
#: ICE-TCP (RFC 6544) is left, and it needs a passive candidate the other side can reach: B's
#: when B is public (A connects from its active candidate), A's when A is public (B connects,
#: and A sees B as peer-reflexive at B's NAT's mapping; A's own attempt at B's private passive
#: candidate gets its few round trips of patience first). Two NATs: no direct path is left —
#: these rows need a relay reached over TCP or TLS (RFC 8656 §3.1): with TURN over TCP they
#: connect through it (EXPECTED_UDP_BLOCKED_TURN_TCP below).
EXPECTED_UDP_BLOCKED: dict[tuple[NatBehavior, NatBehavior], tuple[str, float] | None] = {
    (NONE, NONE): ("host-host/tcp", 0.140),
    **{(NONE, nat): ("host-prflx/tcp", 0.238) for nat in (FULL, RESTRICTED, PORT, SYMMETRIC)},
    **{(nat, NONE): ("host-host/tcp", 0.154) for nat in (FULL, RESTRICTED, PORT, SYMMETRIC)},
    **{
        (a, b): FAILS
        for a in (FULL, RESTRICTED, PORT, SYMMETRIC)
        for b in (FULL, RESTRICTED, PORT, SYMMETRIC)
    },
}

#: The same firewall, and each side's TURN server reached over TCP (turn_transport=TCP): every
#: cell connects. A public side still makes the direct ICE-TCP path, which ranks above relays;
#: with NATs on both sides A's relay, allocated over TCP through its firewall, reaches B's
#: server-reflexive candidate (UDP between the TURN server and B is not blocked), or B's own
#: relay when B's symmetric NAT leaves no usable srflx candidate.
EXPECTED_UDP_BLOCKED_TURN_TCP: dict[tuple[NatBehavior, NatBehavior], tuple[str, float]] = {
    **{k: v for k, v in EXPECTED_UDP_BLOCKED.items() if v is not FAILS},
    **{(a, b): ("relay-srflx", 0.442) for a in (FULL, RESTRICTED, PORT, SYMMETRIC)
       for b in (FULL, RESTRICTED, PORT)},
    **{(a, SYMMETRIC): ("relay-relay", 0.572) for a in (FULL, RESTRICTED, PORT, SYMMETRIC)},
}  # fmt: skip

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ice.md"


def connected_as(
    outcome: Outcome, types: str, connect_time: float
) -> tuple[CandidatePair, CandidatePair]:
    """Assert the outcome is the expected cell; the selected pairs of A and B."""
    assert outcome.connected, outcome.failure_reason
    assert outcome.pair_types == types
    assert outcome.connect_time == pytest.approx(connect_time, abs=1e-9)
    assert outcome.pair_a is not None and outcome.pair_b is not None
    return outcome.pair_a, outcome.pair_b


def mirrored(types: str) -> str:
    local, remote = types.split("-")
    return f"{remote}-{local}"


@pytest.mark.parametrize(
    ("nat_a", "nat_b"), list(EXPECTED), ids=[f"{a.value}/{b.value}" for a, b in EXPECTED]
)
def test_nat_matrix(nat_a: NatBehavior, nat_b: NatBehavior) -> None:
    scenario = two_agents_behind_nats(nat_a, nat_b, seed=0)
    outcome = scenario.run(timeout=60.0)
    a, b = scenario.a.agent, scenario.b.agent
    expected = EXPECTED[nat_a, nat_b]

    if expected is FAILS:
        assert not outcome.connected
        assert IceState.FAILED in (a.state, b.state)
        assert a.selected_pair() is None and b.selected_pair() is None
        assert outcome.failure_reason is not None and "timed out" in outcome.failure_reason
        # The checks did leave: NAT filtering (RFC 4787 §5) is what stopped them.
        assert scenario.network.stats.dropped[DropReason.FILTERED] > 0
        return

    pair_a, pair_b = connected_as(outcome, *expected)
    types = expected[0]
    assert pair_a.nominated and pair_b.nominated
    assert pair_types(pair_b) == mirrored(types)
    # Both agents agree on the path, as each NAT shows it to the other side.
    assert pair_a.local.address == pair_b.remote.address
    assert pair_b.local.address == pair_a.remote.address
    for side, nat, pair in ((scenario.a, nat_a, pair_a), (scenario.b, nat_b, pair_b)):
        host_address = Address(side.host.addresses[0], FIRST_PORT)
        assert pair.local_base == host_address
        if nat is NONE:
            assert pair.local.address == host_address
        else:  # the NAT's public address, as the STUN server saw it too
            [srflx] = [
                c.candidate
                for c in side.agent.local_candidates
                if c.candidate.type is CandidateType.SERVER_REFLEXIVE
            ]
            assert pair.local.address.host == srflx.host != host_address.host
            assert (pair.local.address == srflx.address) is (nat is not SYMMETRIC)


@pytest.mark.parametrize(
    ("nat_a", "nat_b"),
    list(EXPECTED_UDP_BLOCKED),
    ids=[f"{a.value}/{b.value}" for a, b in EXPECTED_UDP_BLOCKED],
)
def test_udp_blocked_matrix(nat_a: NatBehavior, nat_b: NatBehavior) -> None:
    scenario = two_agents_behind_nats(nat_a, nat_b, seed=0, udp_blocked=(True, False))
    outcome = scenario.run(timeout=60.0)
    expected = EXPECTED_UDP_BLOCKED[nat_a, nat_b]
    assert scenario.network.stats.dropped[DropReason.FIREWALL] > 0
    if expected is FAILS:
        assert not outcome.connected
        assert outcome.failure_reason is not None and "ICE-TCP" in outcome.failure_reason
        return
    pair_a, pair_b = connected_as(outcome, *expected)
    # Whoever connected appears to the other at the address its NAT (if any) gave the
    # connection: a peer-reflexive candidate with the real port, never the signalled port 9.
    passive, active = (pair_a, pair_b) if nat_a is NONE and nat_b is not NONE else (pair_b, pair_a)
    assert passive.local.tcp_type is TcpType.PASSIVE and active.local.tcp_type is TcpType.ACTIVE
    assert active.remote.address == passive.local.address
    assert passive.remote.port != 9


@pytest.mark.parametrize(
    ("nat_a", "nat_b"),
    list(EXPECTED_UDP_BLOCKED_TURN_TCP),
    ids=[f"{a.value}/{b.value}" for a, b in EXPECTED_UDP_BLOCKED_TURN_TCP],
)
def test_udp_blocked_turn_over_tcp_matrix(nat_a: NatBehavior, nat_b: NatBehavior) -> None:
    scenario = two_agents_behind_nats(
        nat_a, nat_b, seed=0, udp_blocked=(True, False), turn=True,
        turn_transport=ClientTransport.TCP,
    )  # fmt: skip
    outcome = scenario.run(timeout=60.0)
    assert scenario.network.stats.dropped[DropReason.FIREWALL] > 0
    pair_a, pair_b = connected_as(outcome, *EXPECTED_UDP_BLOCKED_TURN_TCP[nat_a, nat_b])
    assert pair_a.nominated and pair_b.nominated
    if pair_a.local.type is CandidateType.RELAYED:
        # A's relay was allocated over a TCP connection through its firewall, not over UDP.
        assert [s.relay_protocol for s in scenario.a.agent.stats() if s.selected] == ["tcp"]
        assert scenario.network.stats.tcp_established >= 2
        assert pair_a.local.address == pair_b.remote.address


def test_the_matrix_is_deterministic_and_printable() -> None:
    outcomes = nat_matrix(seed=0)
    again = nat_matrix(seed=5)
    assert summary(outcomes) == summary(again)  # the seed moves ports, never the outcome
    text = format_matrix(outcomes)
    lines = text.splitlines()
    assert lines[0].split() == ["A", "\\", "B", *(b.value for b in NatBehavior)]
    assert len(lines) == 1 + len(NatBehavior)
    assert text.count("fails") == sum(1 for e in EXPECTED.values() if e is FAILS)
    assert lines[-1].split()[-1] == "fails"  # symmetric/symmetric
    assert text in DOCS.read_text()  # docs/ice.md shows the matrix as it is
    blocked = format_matrix(nat_matrix(seed=0, udp_blocked=(True, False)))
    assert blocked.count("fails") == sum(1 for e in EXPECTED_UDP_BLOCKED.values() if e is FAILS)
    assert blocked in DOCS.read_text()  # and the one with UDP blocked
    relayed = format_matrix(
        nat_matrix(seed=0, udp_blocked=(True, False), turn_transport=ClientTransport.TCP)
    )
    assert "fails" not in relayed
    assert relayed in DOCS.read_text()  # and the one with TURN over TCP


def summary(
    outcomes: dict[tuple[NatBehavior, NatBehavior], Outcome],
) -> dict[tuple[NatBehavior, NatBehavior], tuple[bool, str | None, float | None]]:
    return {k: (o.connected, o.pair_types, o.connect_time) for k, o in outcomes.items()}
