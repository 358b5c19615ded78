"""What the Binding server did with each datagram (:class:`Outcome`) and its counts
(:class:`ServerStats`); the authenticators (:mod:`stun.authentication`) name their failures with
the same outcomes, which the TURN server counts too."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Outcome(enum.Enum):
    """What the server did with one datagram, and why; counted in :class:`ServerStats`."""

    ANSWERED = "success response"
    # error responses
    INCOMPLETE_CREDENTIALS = "400: integrity without USERNAME/USERHASH, REALM or NONCE"
    BID_DOWN = "400: PASSWORD-ALGORITHM(S) do not match the nonce cookie (§9.2.4)"
    CHALLENGED = "401: no integrity, so REALM and NONCE sent"
    UNKNOWN_USER = "401: USERNAME or USERHASH not valid"
    BAD_INTEGRITY = "401: MESSAGE-INTEGRITY(-SHA256) does not match"
    UNKNOWN_ATTRIBUTE = "420: unknown comprehension-required attributes"
    BAD_RESPONSE_PORT = "400: RESPONSE-PORT 0, a port no answer can go to (RFC 5780 §7.5)"
    STALE_NONCE = "438: the nonce expired"
    INVALID_NONCE = "438: the nonce is not one we issued for this address"
    # silently dropped
    MALFORMED = "dropped: not well-formed STUN"
    CLASSIC = "dropped: RFC 3489 request, classic compatibility off"
    NOT_A_REQUEST = "dropped: an indication or a response"
    UNSUPPORTED_METHOD = "dropped: not a Binding request"
    BAD_FINGERPRINT = "dropped: FINGERPRINT does not match"
    RATE_LIMITED = "dropped: a 400 or 401 beyond its source's budget (failure_rate, failure_burst)"
    DISCOVERY_RATE_LIMITED = (
        "dropped: an unauthenticated behaviour-discovery request beyond its source's budget "
        "(discovery_rate, discovery_burst; RFC 5780 §9)"
    )
    STREAM_GARBAGE = "dropped: a TCP/TLS stream that cannot be framed, connection closed"

    #: Members are singletons: hashed by identity in C, not by ``Enum.__hash__`` in Python (every
    #: answered request counts one).
    __hash__ = object.__hash__


#: The outcomes that send nothing back.
DROPPED = frozenset(
    (
        Outcome.MALFORMED,
        Outcome.CLASSIC,
        Outcome.NOT_A_REQUEST,
        Outcome.UNSUPPORTED_METHOD,
        Outcome.BAD_FINGERPRINT,
        Outcome.RATE_LIMITED,
        Outcome.DISCOVERY_RATE_LIMITED,
        Outcome.STREAM_GARBAGE,
    )
)


@dataclass(slots=True, repr=False)
class ServerStats:
    """How many datagrams ended in each :class:`Outcome`: ``stats[Outcome.MALFORMED]``."""

    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))

    def __repr__(self) -> str:
        seen = ", ".join(f"{o.name}={n}" for o, n in self.counts.items() if n)
        return f"ServerStats({seen})"

    def __getitem__(self, outcome: Outcome) -> int:
        return self.counts[outcome]

    def count(self, outcome: Outcome) -> None:
        """Count one more datagram (or stream) that ended in ``outcome``."""
        self.counts[outcome] += 1

    @property
    def dropped(self) -> int:
        """Datagrams that got no answer."""
        return sum(self.counts[outcome] for outcome in DROPPED)
