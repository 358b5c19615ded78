"""Nomination against the habits of deployed agents (issue 8 §6), as peer behaviours on the wire.

1. A peer that answers a check arriving before it has our credentials with a 200, then forgets it
   (:class:`ForgetsEarlyChecks`): our nomination must still take effect.
2. A peer that nominates aggressively and keeps the first pair it nominated
   (:class:`NominatesAggressively`): a later, better nominated pair must not split the two sides.
"""

from __future__ import annotations

from ice.agent import Agent
from ice.candidate import CandidateType
from ice.checklist import CandidatePair
from ice.events import IceState, SelectedPairChanged
from stun.address import Address

from .machine_pair import (
    A_ADDRESS,
    B_ADDRESS,
    ForgetsEarlyChecks,
    NominatesAggressively,
    Wire,
    connect,
    host_candidates,
    is_request,
    make_agent,
    nominating,
    pair_of,
)

B_SECOND = Address("192.0.2.3", 6000)


def path(pair: CandidatePair | None) -> tuple[Address, Address] | None:
    return None if pair is None else (pair.local_base, pair.remote.address)


def nominations_from(wire: Wire, address: Address, since: int = 0) -> int:
    return sum(1 for d in wire.sent[since:] if d.local == address and nominating(d))


def requests_from(wire: Wire, address: Address, since: int = 0) -> int:
    return sum(1 for d in wire.sent[since:] if d.local == address and is_request(d))


# --------------------------------------------------------------------------- 1. forgotten checks


def forgetful_session() -> tuple[Agent, ForgetsEarlyChecks, Wire]:
    """We (A) control and have the peer's answer; the peer (B) does not have ours yet."""
    a = make_agent(True, A_ADDRESS, 1)
    b = ForgetsEarlyChecks(make_agent(False, B_ADDRESS, 2))
    wire = Wire({A_ADDRESS: a, B_ADDRESS: b})
    a.set_remote_credentials(b.agent.local_username, b.agent.local_password)
    for candidate in host_candidates(b.agent):
        a.add_remote_candidate(candidate)
    a.add_remote_candidate(None)
    a.start_checks(0.0)
    wire.run(1.0)
    # The peer answered our nomination and forgot it; we believe we are done.
    assert b.forgotten_nominations >= 1
    assert a.state is IceState.COMPLETED and b.agent.state is IceState.NEW
    return a, b, wire


def give_peer_our_answer(a: Agent, b: Agent, wire: Wire) -> None:
    b.set_remote_credentials(a.local_username, a.local_password)
    for candidate in host_candidates(a):
        b.add_remote_candidate(candidate)
    b.add_remote_candidate(None)
    b.start_checks(wire.now)


def test_a_nomination_the_peer_forgot_is_repeated_once_it_has_our_credentials() -> None:
    a, b, wire = forgetful_session()
    give_peer_our_answer(a, b.agent, wire)
    at_answer = len(wire.sent)
    wire.run(1.5)
    # The peer's first check proved it has our credentials: USE-CANDIDATE went out again at
    # once, and the peer, controlled and now able to act on it, selected the same pair.
    assert nominations_from(wire, A_ADDRESS, at_answer) == 1
    assert b.agent.state is IceState.COMPLETED
    assert path(b.agent.selected_pair()) == (B_ADDRESS, A_ADDRESS)
    assert path(a.selected_pair()) == (A_ADDRESS, B_ADDRESS)
    # Answered after the peer had our credentials, the nomination is confirmed: consent checks
    # go on without USE-CANDIDATE.
    confirmed = len(wire.sent)
    wire.run(30.0)
    assert requests_from(wire, A_ADDRESS, confirmed) >= 4
    assert nominations_from(wire, A_ADDRESS, confirmed) == 0
    assert a.state is IceState.COMPLETED and b.agent.state is IceState.COMPLETED


def test_consent_checks_carry_use_candidate_while_the_nomination_is_unconfirmed() -> None:
    a, b, wire = forgetful_session()
    at_completion = len(wire.sent)
    wire.run(13.0)  # our answer is still in signalling: only consent checks go out
    consent_checks = requests_from(wire, A_ADDRESS, at_completion)
    assert consent_checks >= 2  # one every 4-6 s
    assert nominations_from(wire, A_ADDRESS, at_completion) == consent_checks
    give_peer_our_answer(a, b.agent, wire)
    wire.run(15.0)
    assert b.agent.state is IceState.COMPLETED
    assert path(b.agent.selected_pair()) == (B_ADDRESS, A_ADDRESS)


def test_a_healthy_session_repeats_its_nomination_at_most_once() -> None:
    """The peer's checks prove it has our credentials from the start: no repetition beyond one
    check if the nomination went out just before the peer's first check arrived."""
    a, b, wire = pair_of()
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    for x, y in ((a, b), (b, a)):
        for candidate in host_candidates(y):
            x.add_remote_candidate(candidate)
        x.add_remote_candidate(None)
        x.start_checks(0.0)
    wire.run(1.0)
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED
    assert 1 <= nominations_from(wire, A_ADDRESS) <= 2
    settled = len(wire.sent)
    wire.run(30.0)
    assert nominations_from(wire, A_ADDRESS, settled) == 0


def test_after_a_restart_the_peer_must_show_again_that_it_has_our_credentials() -> None:
    """Our new password (ICE restart, §9) is news to the peer: the checks it signed with the
    old one prove nothing now. Until one signed with the new password arrives, the new
    generation's nomination is unconfirmed and the consent checks repeat USE-CANDIDATE."""
    a, b, wire = pair_of()
    connect(a, b, wire, until=1.0)
    assert a.incoming.peer_has_credentials
    a.restart(wire.now)
    b.restart(wire.now)
    assert not a.incoming.peer_has_credentials
    # We (A) have the peer's new answer; ours is still in signalling.
    a.set_remote_credentials(b.local_username, b.local_password)
    for candidate in host_candidates(b):
        a.add_remote_candidate(candidate)
    a.add_remote_candidate(None)
    a.start_checks(wire.now)
    wire.run(wire.now + 1.0)
    assert a.state is IceState.COMPLETED and not a.incoming.peer_has_credentials
    completed = len(wire.sent)
    wire.run(wire.now + 13.0)
    consent_checks = requests_from(wire, A_ADDRESS, completed)
    assert consent_checks >= 2
    assert nominations_from(wire, A_ADDRESS, completed) == consent_checks
    give_peer_our_answer(a, b, wire)
    wire.run(wire.now + 2.0)
    assert a.incoming.peer_has_credentials and b.state is IceState.COMPLETED


# --------------------------------------------------------------------------- 2. aggressive peers


def aggressive_session() -> tuple[NominatesAggressively, Agent, Wire]:
    """The peer (A) nominates aggressively; we (B) have two sockets, the better one (B_SECOND)
    unreachable at first and signalled late. A nominates the pair to B_ADDRESS and keeps it."""
    a = NominatesAggressively(make_agent(True, A_ADDRESS, 1))
    b = Agent(make_agent(False, B_ADDRESS, 2).config)
    b.add_base(0, 1, B_SECOND)  # first: the higher local preference
    b.add_base(0, 1, B_ADDRESS)
    b.gather(0.0)
    wire = Wire({A_ADDRESS: a, B_ADDRESS: b, B_SECOND: b}, blackholed={B_SECOND})
    a.agent.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.agent.local_username, a.agent.local_password)
    (first,) = [c for c in host_candidates(b) if c.address == B_ADDRESS]
    a.agent.add_remote_candidate(first)
    for candidate in host_candidates(a.agent):
        b.add_remote_candidate(candidate)
    b.add_remote_candidate(None)
    a.agent.start_checks(0.0)
    b.start_checks(0.0)
    wire.run(1.5)
    assert path(a.agent.selected_pair()) == (A_ADDRESS, B_ADDRESS)
    assert path(b.selected_pair()) == (B_ADDRESS, A_ADDRESS)
    return a, b, wire


def later_better_pair(a: NominatesAggressively, b: Agent, wire: Wire, until: float) -> None:
    """B_SECOND becomes reachable and is trickled to the peer; its checks nominate it."""
    wire.blackholed.clear()
    (second,) = [c for c in host_candidates(b) if c.address == B_SECOND]
    a.agent.add_remote_candidate(second)
    exchange_data(a.agent, b, wire, until)


def exchange_data(a: Agent, b: Agent, wire: Wire, until: float) -> None:
    while wire.now < until:
        a.send(b"\x80from the peer")
        b.send(b"\x80from us")
        wire.run(wire.now + 0.25)


def nominated_on(agent: Agent, local: Address) -> list[bool]:
    return [
        s.selected
        for s in agent.stats()
        if s.nominated and s.local.address == local and s.local.type is CandidateType.HOST
    ]


def test_a_selected_pair_carrying_data_is_kept_against_a_later_aggressive_nomination() -> None:
    a, b, wire = aggressive_session()
    exchange_data(a.agent, b, wire, 2.0)
    later_better_pair(a, b, wire, 6.0)
    # The better pair was nominated by the peer's checks, but the peer kept its first pair and
    # so do we: both sides on one pair, data flowing.
    assert nominated_on(b, B_SECOND) == [False]
    assert path(b.selected_pair()) == (B_ADDRESS, A_ADDRESS)
    assert path(a.agent.selected_pair()) == (A_ADDRESS, B_ADDRESS)
    assert b.state in (IceState.CONNECTED, IceState.COMPLETED)
    # When the peer moves — its data arrives on the better pair — we move too.
    b.receive_datagram(b"\x80moved", B_SECOND, A_ADDRESS, wire.now)
    assert path(b.selected_pair()) == (B_SECOND, A_ADDRESS)
    assert isinstance(b.next_event(), SelectedPairChanged)


def test_the_controlled_side_follows_the_peers_data_back_to_the_pair_it_kept() -> None:
    """Without data on the first pair, the better nomination is selected (RFC 8445 §8.1.1); the
    aggressive peer stays on its first pair, and its data brings us back to it."""
    a, b, wire = aggressive_session()
    wire.blackholed.clear()
    (second,) = [c for c in host_candidates(b) if c.address == B_SECOND]
    a.agent.add_remote_candidate(second)
    wire.run(5.0)
    assert path(b.selected_pair()) == (B_SECOND, A_ADDRESS)
    assert path(a.agent.selected_pair()) == (A_ADDRESS, B_ADDRESS)
    exchange_data(a.agent, b, wire, 6.0)
    assert path(b.selected_pair()) == (B_ADDRESS, A_ADDRESS)
    # Completed well over 3 s ago, and yet no base was released (RFC 8445 §8.3, ice.release):
    # both pairs are nominated, and the peer may send on either.
    assert sorted(b.gatherer.base_addresses()) == sorted([B_ADDRESS, B_SECOND])
    selections = [path(e.pair) for e in wire.log(b) if isinstance(e, SelectedPairChanged)]
    assert selections == [
        (B_ADDRESS, A_ADDRESS), (B_SECOND, A_ADDRESS), (B_ADDRESS, A_ADDRESS)
    ]
