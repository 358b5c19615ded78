"""What the TURN server core did with each datagram, counted (for logs and metrics)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from stun.outcomes import ServerStats


class Outcome(enum.Enum):
    """What the server did with one datagram, and why; counted in :class:`TurnServerStats`."""

    # success responses and relayed data
    ALLOCATED = "Allocate succeeded"
    ALLOCATE_REPEATED = "a retransmitted Allocate got the first answer again (§7.2)"
    REFRESHED = "Refresh succeeded"
    DELETED = "Refresh with LIFETIME 0 deleted the allocation (or one family of it)"
    PERMITTED = "CreatePermission succeeded"
    CHANNEL_BOUND = "ChannelBind succeeded"
    CONNECTED = "Connect succeeded: the server connected to the peer over TCP (RFC 6062 §5.2)"
    CONNECTION_ATTEMPT = "a peer connected to a relayed TCP address: ConnectionAttempt sent (§5.3)"
    CONNECTION_BOUND = "ConnectionBind succeeded: a client data connection joined its peer (§5.4)"
    BINDING = "a Binding request, handed to the Binding server (see stats.binding)"
    RELAYED_TO_PEER = "Send indication or ChannelData relayed to a peer"
    RELAYED_TO_CLIENT = "a peer's datagram relayed to the client"
    # error responses
    AUTHENTICATION_FAILED = "400/401/438: authentication failed (see stats.authentication)"
    EXPIRED_CREDENTIALS = "401: the REST API username has expired"
    REDIRECTED = "300: Allocate sent to the alternate server"
    BAD_REQUEST = "400: a required attribute missing or invalid, or a channel conflict"
    FORBIDDEN = "403: the peer address is refused by policy"
    UNKNOWN_ATTRIBUTE = "420: unknown comprehension-required attributes (or DONT-FRAGMENT)"
    ALLOCATION_MISMATCH = "437: no allocation for this 5-tuple, or one exists already"
    ADDRESS_FAMILY_NOT_SUPPORTED = "440: no relayed addresses of the requested family"
    WRONG_CREDENTIALS = "441: not the user that created the allocation"
    UNSUPPORTED_TRANSPORT = "442: REQUESTED-TRANSPORT neither UDP nor TCP (or TCP relays off)"
    PEER_FAMILY_MISMATCH = "443: the peer's family is not the relayed address's"
    CONNECTION_EXISTS = "446: a connection to this peer exists or is being made (RFC 6062 §5.2)"
    CONNECTION_FAILED = "447: connecting to the peer failed or timed out (RFC 6062 §5.2)"
    QUOTA_REACHED = "486: the user holds as many allocations as allowed"
    INSUFFICIENT_CAPACITY = "508: out of allocations, relayed addresses, permissions or channels"
    # silently dropped
    MALFORMED = "dropped: not well-formed STUN or ChannelData"
    BAD_FINGERPRINT = "dropped: FINGERPRINT does not match"
    NOT_A_REQUEST = "dropped: a response, or an indication other than Send"
    UNSUPPORTED_METHOD = "dropped: a request of a method this server does not serve"
    RATE_LIMITED = "dropped: this source's budget of authentication failures is spent"
    NO_ALLOCATION = "dropped: no allocation for this 5-tuple or relayed address"
    BAD_INDICATION = "dropped: Send without XOR-PEER-ADDRESS or DATA, to port 0, or not servable"
    NO_PERMISSION = "dropped: no permission for the peer (§9)"
    NO_CHANNEL = "dropped: ChannelData on a channel that is not bound (§12.6)"
    OVER_BANDWIDTH = "dropped: the allocation's bandwidth limit"
    TOO_BIG = "dropped: too large to wrap for the client, or for a UDP datagram to the peer"
    WRONG_RELAY_TRANSPORT = "dropped: a UDP datagram for the relayed address of a TCP allocation"
    PEER_CONNECTION_REFUSED = "dropped: a peer's TCP connection without permission or room (§5.3)"
    CONNECTION_UNCLAIMED = "dropped: a peer connection no ConnectionBind claimed in time (§5.2)"

    #: Members are singletons compared by identity: hashed by identity too, in C, rather than by
    #: ``Enum.__hash__`` in Python (every datagram counts one).
    __hash__ = object.__hash__


#: The outcomes that send nothing back.
DROPPED = frozenset(o for o in Outcome if o.value.startswith("dropped"))


@dataclass(slots=True, repr=False)
class TurnServerStats:
    """Counters: datagrams by :class:`Outcome`, authentication failures by their
    :class:`stun.Outcome`, the Binding server's own, and relayed bytes each way."""

    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    authentication: ServerStats = field(default_factory=ServerStats)
    binding: ServerStats = field(default_factory=ServerStats)
    bytes_to_peer: int = 0
    bytes_to_client: int = 0

    def __repr__(self) -> str:
        seen = ", ".join(f"{o.name}={n}" for o, n in self.counts.items() if n)
        return (
            f"TurnServerStats({seen}, bytes_to_peer={self.bytes_to_peer}, "
            f"bytes_to_client={self.bytes_to_client})"
        )

    def __getitem__(self, outcome: Outcome) -> int:
        return self.counts[outcome]

    @property
    def dropped(self) -> int:
        """Datagrams that got no answer and were not relayed."""
        return sum(self.counts[outcome] for outcome in DROPPED)
