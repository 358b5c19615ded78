"""One allocation's state (RFC 8656 §6): its 5-tuple, relayed addresses, permissions and channels.

An allocation is named by the 5-tuple of the Allocate that created it (client address, server
address, transport); it holds one relayed transport address, or two of different families (a dual
allocation, §7.2), a time-to-expiry, the permissions (one per peer IP address, §9) and the channel
bindings (§12). The server core (:mod:`turn.server.core`) decides what may change; this module
only keeps the tables and answers questions about them.

Every lookup on the relay path is one dict access. The permission and channel tables are kept in
order of expiry — every grant or refresh lasts the same configured time from ``now``, and a
refreshed entry moves to the end — so forgetting the expired ones (:meth:`Allocation.sweep`)
looks only at the front: each entry is looked at once more than it is kept, whatever a client
sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from stun import Address, AddressFamily
from stun.limits import TokenBucket

from ..attributes import TransportProtocol
from ..transport import ClientTransport


class FiveTuple(NamedTuple):
    """What names an allocation (RFC 8656 §2): the client's and the server's transport addresses
    and the transport between them."""

    client: Address
    server: Address
    transport: ClientTransport = ClientTransport.UDP


@dataclass(slots=True)
class ChannelBinding:
    """A channel (RFC 8656 §12): ``number`` stands for ``peer``, reached from ``relay``.

    Data flows while ``now < expires_at``; after that the number and the peer stay reserved to
    each other for the rebind wait (§12: five minutes) before the binding is forgotten.
    """

    number: int
    peer: Address
    relay: Address
    expires_at: float


class Allocation:
    """The server's record of one allocation. Read its attributes; the core changes them."""

    __slots__ = (
        "allocate_response",
        "channel_by_peer",
        "channels",
        "expires_at",
        "five_tuple",
        "permissions",
        "relay_transport",
        "relays",
        "timer_at",
        "to_client",
        "to_peer",
        "transaction_id",
        "username",
    )

    def __init__(
        self,
        five_tuple: FiveTuple,
        *,
        username: str,
        relays: dict[AddressFamily, Address],
        expires_at: float,
        transaction_id: bytes,
        to_peer: TokenBucket | None = None,
        to_client: TokenBucket | None = None,
        relay_transport: TransportProtocol = TransportProtocol.UDP,
    ) -> None:
        self.five_tuple = five_tuple
        #: The user that created it: every later request must come from the same (§5, 441).
        self.username = username
        #: The relayed transport address of each family: one, or two for a dual allocation.
        self.relays = relays
        #: UDP, or TCP for a TCP allocation (RFC 6062), whose peers connect and are connected to.
        self.relay_transport = relay_transport
        self.expires_at = expires_at
        #: The Allocate's transaction ID and encoded success response, answered again to a
        #: retransmission of that Allocate (§7.2).
        self.transaction_id = transaction_id
        self.allocate_response = b""
        #: Peer IP address → when its permission expires (§9; the port does not matter).
        self.permissions: dict[str, float] = {}
        self.channels: dict[int, ChannelBinding] = {}
        self.channel_by_peer: dict[Address, ChannelBinding] = {}
        #: Bandwidth limits on relayed bytes, one per direction (``None``: unlimited).
        self.to_peer = to_peer
        self.to_client = to_client
        #: When the core's timer will next look at this allocation.
        self.timer_at = expires_at

    def __repr__(self) -> str:
        relays = ", ".join(str(a) for a in self.relays.values())
        return f"Allocation({self.five_tuple.client} → {relays}, user={self.username!r})"

    @property
    def relayed_addresses(self) -> tuple[Address, ...]:
        """The relayed transport addresses, IPv4 first."""
        return tuple(self.relays[f] for f in sorted(self.relays))

    def has_permission(self, host: str, now: float) -> bool:
        """Whether a permission for peer IP ``host`` is installed and unexpired (§9)."""
        expires_at = self.permissions.get(host)
        return expires_at is not None and now < expires_at

    def permission_count(self, now: float) -> int:
        """How many permissions are in force."""
        return sum(1 for expires_at in self.permissions.values() if now < expires_at)

    def channel_count(self, now: float) -> int:
        """How many channels carry data."""
        return sum(1 for binding in self.channels.values() if now < binding.expires_at)

    def permit(self, host: str, expires_at: float) -> None:
        """Install or refresh the permission for peer IP ``host`` (§9), last in expiry order."""
        permissions = self.permissions
        permissions.pop(host, None)
        permissions[host] = expires_at

    def bind(self, binding: ChannelBinding) -> None:
        """Record a new channel binding (§12), last in expiry order."""
        self.channels[binding.number] = binding
        self.channel_by_peer[binding.peer] = binding

    def rebind(self, binding: ChannelBinding, expires_at: float) -> None:
        """Refresh a channel binding (§12), moving it last in expiry order."""
        binding.expires_at = expires_at
        del self.channels[binding.number]
        self.channels[binding.number] = binding

    def sweep(self, now: float, rebind_wait: float) -> None:
        """Forget expired permissions, and channels whose rebind wait is over (§9, §12): those
        at the front of their tables (see the module docstring)."""
        permissions = self.permissions
        while permissions:
            host, expires_at = next(iter(permissions.items()))
            if expires_at > now:
                break
            del permissions[host]
        channels = self.channels
        while channels:
            binding = next(iter(channels.values()))
            if binding.expires_at + rebind_wait > now:
                break
            self.forget_channel(binding)

    def forget_channel(self, binding: ChannelBinding) -> None:
        """Drop a channel binding from both tables."""
        del self.channels[binding.number]
        del self.channel_by_peer[binding.peer]

    def forget_family(self, family: AddressFamily) -> Address:
        """Drop one family's relayed address and the permissions and channels that used it;
        return the address (for the core to release)."""
        relay = self.relays.pop(family)
        for binding in [b for b in self.channels.values() if b.relay == relay]:
            self.forget_channel(binding)
        for host in [h for h in self.permissions if (":" in h) == (family is AddressFamily.IPV6)]:
            del self.permissions[host]
        return relay
