"""How a TURN server behaves: every RFC 8656 timer and every limit, with secure defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from stun import Address, AddressFamily, LocalProtocolError, RandomSource
from stun._version import DEFAULT_SOFTWARE
from stun.advertised import AdvertisedAddress, check_advertised, parse_advertised
from stun.authentication import LongTermCredentials
from stun.nonces import DEFAULT_NONCE_LIFETIME, check_nonce_settings
from stun.randomness import default_random
from stun.server import ServerConfig

from ..channel import MAX_CHANNEL, RFC5766_MAX_CHANNEL
from .policy import PeerPolicy


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnServerConfig:
    """A TURN server's configuration, validated when built. Times are seconds.

    Authentication cannot be turned off (RFC 8656 §5: the server MUST authenticate requests with
    the long-term credential mechanism): ``credentials`` holds the realm and the users with fixed
    passwords, and ``rest_secret`` adds every user of the TURN REST API
    (:mod:`turn.server.credentials`); with only the latter, give ``credentials`` no users.
    """

    credentials: LongTermCredentials
    #: The TURN REST API shared secret (coturn's ``--static-auth-secret``), or ``None``.
    rest_secret: bytes | None = field(default=None, repr=False)
    #: SOFTWARE in responses to authenticated requests (RFC 8489 §14.14).
    software: str | None = DEFAULT_SOFTWARE
    #: Nonce lifetime (RFC 8489 §9.2; 438 after it) and MAC key (from ``rng`` if unset).
    nonce_lifetime: float = DEFAULT_NONCE_LIFETIME
    nonce_secret: bytes | None = field(default=None, repr=False)

    #: RFC 8656 §7.2: the lifetime granted when the client asks for less (or nothing) ...
    default_lifetime: float = 600.0
    #: ... and the most granted (RECOMMENDED: no more than 3600 s).
    max_lifetime: float = 3600.0
    #: RFC 8656 §9: a permission lasts exactly 300 s unless refreshed.
    permission_lifetime: float = 300.0
    #: RFC 8656 §12: a channel binding lasts 600 s unless refreshed ...
    channel_lifetime: float = 600.0
    #: ... and its number and peer stay reserved to each other 300 s after it expires.
    channel_rebind_wait: float = 300.0
    #: RFC 8656 §7.2: how long a port reserved by EVEN-PORT's R bit is held (at least 30 s).
    reservation_lifetime: float = 30.0

    #: The families of relayed addresses offered; others are answered 440 (RFC 8656 §7.2).
    relay_families: frozenset[AddressFamily] = frozenset(AddressFamily)
    #: Allocations one user may hold (486, RFC 8656 §7.2: quotas go by username).
    user_quota: int = 10
    #: Allocations the server holds at most (508).
    total_quota: int = 1000
    #: Ports held for RESERVATION-TOKENs at most (508 beyond).
    max_reservations: int = 100
    #: Permissions and channels per allocation (508 beyond): no table grows without bound.
    max_permissions: int = 128
    max_channels: int = 128
    #: Relayed bytes a second per allocation and direction (``--max-bps``); ``None``: no limit.
    #: The bucket holds a second's worth, and never less than one largest datagram.
    max_bytes_per_second: int | None = None
    #: Behind a 1:1 NAT (coturn's ``--external-ip``): relayed addresses are reported in
    #: XOR-RELAYED-ADDRESS with the public address in place of the one they are bound on
    #: (``"PUBLIC"`` for every relay address of its family, ``"PUBLIC/PRIVATE"`` for one;
    #: :mod:`stun.advertised`). XOR-MAPPED-ADDRESS is the client's address as seen, which the
    #: server's NAT does not change. Also takes the text forms.
    external_addresses: tuple[AdvertisedAddress, ...] = ()
    #: Which peers may be relayed to (403 for the rest).
    peer_policy: PeerPolicy = field(default_factory=PeerPolicy)
    #: Authentication failures answered per second and source IP address, with this burst;
    #: beyond that the requests are dropped. The table of sources holds at most so many.
    failure_rate: float = 2.0
    failure_burst: int = 20
    failure_table_size: int = 10_000
    #: Answer every Allocate with 300 Try Alternate and this ALTERNATE-SERVER (RFC 8489 §10).
    alternate_server: Address | None = None
    #: Answer Binding requests, unauthenticated, as a STUN server does (RFC 8489 §12).
    answer_binding: bool = True
    #: Accept channel numbers up to 0x7FFF, as RFC 5766 §11 did, from clients that still use them
    #: (coturn's turnutils_uclient); RFC 8656 §12 answers them 400. ChannelData from a client
    #: then starts with any byte from 0x40 to 0x7F.
    rfc5766_channels: bool = False
    #: Serve TCP allocations (RFC 6062) to clients on TCP or TLS; ``False`` answers them 442, as
    #: coturn's ``--no-tcp-relay`` does. The driver must also listen on relayed addresses.
    tcp_relays: bool = True
    #: RFC 6062 §5.2: how long the server tries to connect to a peer for a Connect before it
    #: answers 447 (at least 30 s) ...
    tcp_connect_timeout: float = 30.0
    #: ... and §5.2, §5.3: how long a peer connection waits for the client's ConnectionBind.
    connection_bind_timeout: float = 30.0
    #: Peer connections one TCP allocation may have, in any state (508 to a Connect beyond it;
    #: a peer's connection beyond it is closed at once), so pending CONNECTION-IDs are bounded.
    max_peer_connections: int = 32
    rng: RandomSource = field(default_factory=default_random, repr=False)

    @property
    def max_channel(self) -> int:
        """The last channel number a ChannelBind may name."""
        return RFC5766_MAX_CHANNEL if self.rfc5766_channels else MAX_CHANNEL

    def __post_init__(self) -> None:
        ServerConfig(software=self.software)  # the same SOFTWARE rules as the Binding server
        check_nonce_settings(self.nonce_secret, self.nonce_lifetime)
        external = tuple(
            parse_advertised(value, "external_addresses") for value in self.external_addresses
        )
        check_advertised(external, "external_addresses")
        object.__setattr__(self, "external_addresses", external)
        if self.rest_secret is not None and not self.rest_secret:
            raise LocalProtocolError("rest_secret must not be empty")
        for name in (
            "default_lifetime",
            "max_lifetime",
            "permission_lifetime",
            "channel_lifetime",
            "failure_rate",
            "connection_bind_timeout",
        ):
            if not getattr(self, name) > 0:
                raise LocalProtocolError(f"{name} must be positive")
        if self.default_lifetime > self.max_lifetime:
            raise LocalProtocolError("default_lifetime must not exceed max_lifetime")
        if self.max_lifetime >= 2**32:
            raise LocalProtocolError("max_lifetime must fit LIFETIME's 32 bits")
        if self.channel_rebind_wait < 0:
            raise LocalProtocolError("channel_rebind_wait must not be negative")
        if self.tcp_connect_timeout < 30:
            raise LocalProtocolError("tcp_connect_timeout must be at least 30 s (RFC 6062 §5.2)")
        if self.reservation_lifetime < 30:
            raise LocalProtocolError("reservation_lifetime must be at least 30 s (RFC 8656 §7.2)")
        for name in (
            "user_quota",
            "total_quota",
            "max_permissions",
            "max_channels",
            "failure_burst",
            "failure_table_size",
            "max_peer_connections",
        ):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be at least 1")
        if self.max_reservations < 0:
            raise LocalProtocolError("max_reservations must not be negative")
        if self.max_bytes_per_second is not None and self.max_bytes_per_second < 1:
            raise LocalProtocolError("max_bytes_per_second must be positive (or None)")
        if not self.relay_families:
            raise LocalProtocolError("relay_families must name at least one family")
