"""Local preferences unique per candidate (RFC 8445 §5.1.2.1), for the candidates that share a
base: server-reflexive candidates from several STUN servers, relayed candidates from several TURN
servers, or from one server over UDP and over TLS.

RFC 8445 §5.1.2.1: "If there are multiple candidates for a particular component for a particular
data stream that have the same type, the local preference MUST be unique for each one." Host
candidates get one preference per base address (RFC 8421, :func:`~ice.candidate.local_preferences`);
a reflexive or relayed candidate starts from its base's. :class:`LocalPreferences` hands out that
value, or the next lower one that no candidate of the same stream, component and type holds
(higher ones if none is left below), and takes it back when the candidate is lost.

A relayed candidate's wanted preference also says how the TURN server is reached: UDP before TCP
before TLS (:func:`relay_local_preference`), as browsers rank them (libwebrtc gives relays type
preferences 2, 1 and 0 by transport): the two top bits are the transport, the other fourteen the
base's rank — so a UDP relay keeps the base's own preference, and every UDP relay ranks above
every TCP relay, which rank above every TLS relay, whatever the base.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from turn.transport import ClientTransport

from .candidate import CandidateType

#: How a TURN server is reached, best first, as the two top bits of a relay's local preference.
RELAY_TRANSPORT_PREFERENCE: Mapping[ClientTransport, int] = MappingProxyType(
    {ClientTransport.UDP: 3, ClientTransport.TCP: 2, ClientTransport.TLS: 1}
)
_RANK_BITS = 14
_RANK_MASK = (1 << _RANK_BITS) - 1
_HIGHEST = 0xFFFF


def relay_local_preference(base_preference: int, transport: ClientTransport) -> int:
    """The local preference a relayed candidate asks for: the transport to its TURN server in
    the top two bits, its base's rank below them (module docstring)."""
    return (RELAY_TRANSPORT_PREFERENCE[transport] << _RANK_BITS) + (base_preference & _RANK_MASK)


class LocalPreferences:
    """The local preferences taken by the reflexive and relayed candidates of an agent, per
    (stream, component, candidate type)."""

    __slots__ = ("_taken",)

    def __init__(self) -> None:
        #: Made at the first reflexive or relayed candidate (host ones take no value here).
        self._taken: dict[tuple[int, int, CandidateType], set[int]] | None = None

    def take(self, stream: int, component: int, kind: CandidateType, wanted: int) -> int:
        """``wanted`` if no candidate of this stream, component and type holds it, else the
        nearest free value below it (above it when none is left below); it is now taken."""
        if self._taken is None:
            self._taken = {}
        taken = self._taken.setdefault((stream, component, kind), set())
        value = wanted
        while value in taken and value > 0:
            value -= 1
        if value in taken:  # all of 0..wanted taken: go up instead
            value = wanted
            while value in taken and value < _HIGHEST:
                value += 1
        taken.add(value)
        return value

    def release(self, stream: int, component: int, kind: CandidateType, value: int) -> None:
        """A candidate that held ``value`` is gone: the value is free again."""
        if self._taken is not None:
            self._taken.get((stream, component, kind), set()).discard(value)
