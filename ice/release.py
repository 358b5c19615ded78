"""Freeing what a completed session does not use (RFC 8445 §8.3), as part of the sans-IO agent.

Theory of operation. Until ICE completes, an agent answers checks and sends triggered checks on
every base it declared. Once it has completed — every component has a nominated, selected pair —
RFC 8445 §8.3.1 lets it stop doing so for the candidates of no selected pair after waiting three
more seconds (time for a late change of the selected pairs), and free them. The agent arms
:data:`RELEASE_DELAY` when it enters the completed state; leaving that state (a restart, consent
disconnected or lost, a failure, closing) disarms it. When the deadline comes,
:func:`unused_bases` names every base no selected pair needs, and the agent forgets each one the
way it forgets a base whose interface address went away (``Gatherer.remove_base``): its
candidates are lost (:class:`~ice.events.CandidateLost` with the reason :data:`RELEASED`), their
pairs fail and leave the check lists, and the driver closes the socket. A TURN allocation whose
relayed candidates no selected pair uses is deleted too (``Relays.release``: a Refresh with
LIFETIME 0, RFC 8656 §8), even when its base stays. The same rule holds for an ICE-lite agent
(§8.3.2 would let it free them at once; it waits too).

A selected pair needs its own base, and a relayed one the host base its TURN allocation talks
from; a server-reflexive or peer-reflexive local candidate's base is the host base the pair is
checked from already. A nominated pair that is not selected keeps its base too: a peer that
nominates aggressively may hold on to such a pair and send on it (its data makes us select it
again, :meth:`~ice.selection.Selection.follow_peer`); with regular nomination, the nominated
pairs are the selected ones.

At a restart (§9) the driver re-opens the released bases — new sockets — and declares them again
(``Agent.add_base``, ``Agent.add_tcp_base``): the restart gathers them as bases added since
gathering, and allocates again where an allocation was deleted, so their candidates are offered
again.

What the released candidates leave behind goes too: a remote candidate that no local candidate
left can pair with (the peer's TCP candidates once the agent has no TCP base, RFC 6544) is
forgotten, as a restart would forget it (:func:`unpairable_remotes`); a restart takes the peer's
candidates anew.

The release happens once per completion: a candidate that appears after it (a late
server-reflexive answer, an allocation) stays until the next restart — §8.3 allows freeing,
it does not require it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stun.address import Address

from .candidate import Candidate, pairs_with

if TYPE_CHECKING:  # the agent imports this module
    from .agent import Agent

#: How long a completed agent waits before it releases the bases no selected pair uses: "an
#: additional three seconds" (RFC 8445 §8.3.1), in case the selected pairs change once more.
RELEASE_DELAY = 3.0

#: The reason of the :class:`~ice.events.CandidateLost` events of a released base: a driver
#: closes the base's socket when it sees it.
RELEASED = (
    f"released: ICE completed {RELEASE_DELAY:g} s ago and no selected pair uses it (RFC 8445 §8.3)"
)


def unused_bases(agent: Agent, needed: set[Address] | None = None) -> list[Address]:
    """The declared bases, UDP and TCP, that no selected or nominated pair needs (``needed``,
    else :func:`needed_bases`); none while a component has no selected pair of this generation
    (then nothing is settled)."""
    if needed is None:
        needed = needed_bases(agent)
    if needed is None:
        return []
    return [address for address in agent.gatherer.base_addresses() if address not in needed]


def needed_bases(agent: Agent) -> set[Address] | None:
    """The bases the selected and nominated pairs use — relayed addresses, and host bases with
    the ones their allocations talk from — or ``None`` while a component has no selected pair
    of this generation."""
    if not agent.selection.all_concluded:
        return None
    relays = agent.gatherer.relays
    needed = set()
    components = agent.selection.keys()  # (stream, component) pairs, not a dict's keys
    nominated = [
        pair for key in components for pair in agent.nomination.valid_pairs(*key) if pair.nominated
    ]
    for pair in [*agent.selected.values(), *nominated]:
        base = pair.local_base
        needed.add(base)
        host = relays.base_of(base)  # relayed: where its allocation is talked to
        if host is not None:
            needed.add(host)
    return needed


def unpairable_remotes(agent: Agent) -> list[tuple[int, Candidate]]:
    """The remote candidates, with their stream, that no local candidate of the agent can pair
    with (:func:`~ice.candidate.pairs_with`): after a release, what only the released bases
    could have checked."""
    gatherer = agent.gatherer
    return [
        (stream, remote)
        for stream, remote in agent.remote_candidates
        if not any(
            pairs_with(local.candidate, remote)
            for local in gatherer.pairable(stream, remote.component)
        )
    ]
