"""How a TURN allocation client behaves: :class:`TurnClientConfig`, every timer and bound of
:class:`~turn.client.TurnAllocation` with the RFC 8656 default, validated when built."""

from __future__ import annotations

from dataclasses import dataclass, field

from stun import AddressFamily
from stun.client import ClientConfig

from .. import errors
from ..attributes import TransportProtocol
from ..transport import ClientTransport


@dataclass(frozen=True, kw_only=True)
class TurnClientConfig:
    """How a :class:`~turn.client.TurnAllocation` behaves. Times are seconds; defaults are the
    RFC's.

    ``stun`` configures the requests (retransmission, SOFTWARE, FINGERPRINT, password
    algorithms, the random source); its ``credentials`` and ``reliable`` are replaced by the
    allocation's credentials and by ``transport``.
    """

    stun: ClientConfig = field(default_factory=ClientConfig)
    #: How the client reaches the server: over TCP and TLS nothing is retransmitted and
    #: ChannelData is padded to four bytes (RFC 8656 §12.5).
    transport: ClientTransport = ClientTransport.UDP
    #: REQUESTED-TRANSPORT (§7.1): ``TCP`` asks for a TCP allocation (RFC 6062), whose peers
    #: are reached over TCP connections (:mod:`turn.client.tcp`); it needs a TCP or TLS
    #: ``transport`` and excludes DONT-FRAGMENT, EVEN-PORT, reservations and dual allocations
    #: (RFC 6062 §5.1).
    relay_transport: TransportProtocol = TransportProtocol.UDP
    #: LIFETIME to ask for in Allocate and Refresh (§7.1); ``None`` takes the server's default.
    lifetime: int | None = None
    #: Refresh a lease this long before it ends (§8 suggests a minute), at most a fifth of it.
    refresh_margin: float = 60.0
    #: How long a permission lasts (§9: exactly 300 s) and a channel binding (§12: 600 s).
    permission_lifetime: float = 300.0
    channel_lifetime: float = 600.0
    #: REQUESTED-ADDRESS-FAMILY (§7.1): ``IPV6`` for an IPv6 relayed address.
    requested_family: AddressFamily | None = None
    #: ADDITIONAL-ADDRESS-FAMILY (§7.1): an IPv6 relayed address besides the IPv4 one.
    dual_allocation: bool = False
    #: EVEN-PORT (§7.1): an even relayed port; ``reserve_next_port`` sets its R bit, asking the
    #: server to hold the next port for a later Allocate with the RESERVATION-TOKEN it returns.
    even_port: bool = False
    reserve_next_port: bool = False
    #: RESERVATION-TOKEN (§7.1): allocate the port an earlier allocation reserved.
    reservation_token: bytes | None = None
    #: DONT-FRAGMENT (§7.1): dropped, and the Allocate retried, if the server does not know it.
    dont_fragment: bool = False
    #: Create a permission for a peer's IP address when data is first sent to it.
    auto_permission: bool = True
    #: Bind a channel to a peer when data is first sent to it (ChannelData costs 4 bytes, a
    #: Send indication 36 or more).
    use_channels: bool = True
    #: Datagrams held per peer while its permission is being created; more are dropped.
    max_queued_per_peer: int = 32
    #: Give up an unanswered Allocate after this many seconds, challenge and retransmissions
    #: included (:class:`~turn.events.AllocationFailed` with a timeout). ``None``: the STUN
    #: transaction's own timeout (39.5 s over UDP with the RFC 8489 defaults).
    allocate_timeout: float | None = None
    #: Peer IP addresses with a permission (held or asked for) at most:
    #: :meth:`~turn.client.TurnAllocation.send` to a new one beyond drops the data,
    #: :meth:`~turn.client.TurnAllocation.create_permission` raises.
    max_permissions: int = 1024

    def __post_init__(self) -> None:
        if self.lifetime is not None and not 0 < self.lifetime < 2**32:
            raise errors.LocalProtocolError("lifetime must be 1 to 2**32 - 1 seconds")
        if self.refresh_margin <= 0:
            raise errors.LocalProtocolError("refresh_margin must be positive")
        if self.permission_lifetime <= 0 or self.channel_lifetime <= 0:
            raise errors.LocalProtocolError("permission and channel lifetimes must be positive")
        if self.max_queued_per_peer < 0:
            raise errors.LocalProtocolError("max_queued_per_peer must not be negative")
        if self.allocate_timeout is not None and self.allocate_timeout <= 0:
            raise errors.LocalProtocolError("allocate_timeout must be positive")
        if self.max_permissions < 1:
            raise errors.LocalProtocolError("max_permissions must be at least 1")
        if self.relay_transport is TransportProtocol.TCP and (
            self.dont_fragment
            or self.even_port
            or self.reserve_next_port
            or self.reservation_token is not None
            or self.dual_allocation
        ):
            raise errors.LocalProtocolError(
                "a TCP allocation excludes dont_fragment, even_port, reserve_next_port, "
                "reservation_token and dual_allocation (RFC 6062 §5.1)"
            )
        if self.dual_allocation and (self.requested_family is not None or self.reserve_next_port):
            raise errors.LocalProtocolError(
                "dual_allocation excludes requested_family and reserve_next_port (RFC 8656 §7.2)"
            )
        if self.reservation_token is not None:
            if len(self.reservation_token) != 8:
                raise errors.LocalProtocolError("reservation_token must be 8 bytes")
            if (
                self.even_port
                or self.reserve_next_port
                or self.requested_family is not None
                or self.dual_allocation
            ):
                raise errors.LocalProtocolError(
                    "reservation_token excludes even_port, reserve_next_port, requested_family "
                    "and dual_allocation (RFC 8656 §7.2)"
                )
