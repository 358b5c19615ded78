"""The ICE agent's configuration: every RFC timer and limit in one frozen dataclass.

Defaults are the RFCs' (RFC 8445 §14 for pacing and RTO, §11 for keepalives, RFC 7675 for
consent), except where a comment says the RFC leaves the value to the implementation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from stun.address import Address, normalize_host
from stun.advertised import AdvertisedAddress, check_advertised, parse_advertised
from stun.errors import LocalProtocolError as StunLocalProtocolError
from stun.randomness import RandomSource, default_random
from stun.transaction import TransactionConfig
from turn.transport import ClientTransport

from .candidate import TcpType
from .errors import LocalProtocolError, enum_member
from .shared_values import SharedValues


@dataclass(frozen=True, kw_only=True, slots=True)
class RelayServer:
    """A TURN server to allocate relayed candidates on (RFC 8656), reached over ``transport``:
    UDP, or a TCP or TLS connection the driver opens (RFC 7065's ``?transport=tcp`` and
    ``turns:``). ``server_name`` is the name a TLS certificate must carry (the URI's host; the
    IP literal when ``None``)."""

    address: Address
    username: str
    password: str = field(repr=False)
    transport: ClientTransport = ClientTransport.UDP
    server_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", server_address("a TURN server", self.address))
        object.__setattr__(
            self, "transport", enum_member(ClientTransport, self.transport, "transport")
        )
        if self.server_name is not None and (
            not isinstance(self.server_name, str) or not self.server_name
        ):
            raise LocalProtocolError("a TURN server's server_name must be a non-empty string")
        if not isinstance(self.username, str) or not self.username:
            raise LocalProtocolError("a TURN server's username must be a non-empty string")
        if not isinstance(self.password, str):
            raise LocalProtocolError("a TURN server's password must be a string")


def server_address(what: str, value: object) -> Address:
    """``value`` as a server's :class:`~stun.address.Address`: an IP literal (normalised) and a
    port of 1-65535. Names are resolved by the asyncio layer, never here."""
    if not (isinstance(value, tuple) and len(value) == 2):
        raise LocalProtocolError(f"{what} must be an Address(host, port), not {value!r}")
    host, port = value
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise LocalProtocolError(f"{what}: port {port!r} out of range: 1 to 65535")
    try:
        return Address(normalize_host(host), port)
    except (StunLocalProtocolError, AttributeError):
        raise LocalProtocolError(f"{what}: {host!r} is not an IP address") from None


class Policy(enum.Enum):
    """Which candidates the agent may use (WebRTC's iceTransportPolicy)."""

    ALL = "all"
    RELAY = "relay"


#: The default retransmission of checks: one immutable object that every config shares.
CHECK_TRANSACTION = TransactionConfig(max_requests=7, final_wait=16)


#: The configuration's small tuples (``streams``, ``tcp_types``), held once per process: every
#: configuration with an equal one shares it (each copy is 48-56 bytes per agent).
_SHARED_TUPLES: SharedValues[tuple[object, ...]] = SharedValues()


def _shared(value: object) -> object:
    """``value``, or the equal tuple already held if it is a tuple."""
    return _SHARED_TUPLES.get(value) if type(value) is tuple else value


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentConfig:
    """How an :class:`~ice.agent.Agent` behaves."""

    #: Start as the controlling agent (RFC 8445 §6.1.1); a role conflict may switch it.
    controlling: bool = True
    #: Components per data stream: ``(1,)`` is one stream with one component (RTP+RTCP muxed).
    streams: tuple[int, ...] = (1,)
    #: STUN servers to learn server-reflexive candidates from (RFC 8445 §5.1.1.2).
    stun_servers: tuple[Address, ...] = ()
    #: TURN servers to learn relayed candidates from (RFC 8445 §5.1.1.2).
    turn_servers: tuple[RelayServer, ...] = ()
    #: Ta: the pace of new checks and gathering transactions (§14.2: 50 ms; never below 5 ms).
    pacing: float = 0.050
    #: How many pairs a check list keeps (§6.1.2.5); also bounds each component's valid list.
    max_pairs: int = 100
    #: How many remote candidates a data stream keeps, signalled and peer-reflexive together:
    #: the peer decides how many it trickles and from how many addresses it checks (§7.3.1.3),
    #: so more are dropped (counted in ``Agent.failures.peer_input``).
    max_remote_candidates: int = 100
    #: How many peer-reflexive local candidates (addresses a response says the peer saw,
    #: §7.2.5.3.1) the agent learns; past that a valid pair keeps the candidate it checked from.
    max_local_peer_reflexive: int = 16
    #: Retransmission of checks (§14.3 gives the RTO; Rc and Rm are STUN's, RFC 8489 §6.2.1).
    check_transaction: TransactionConfig = CHECK_TRANSACTION
    #: A dead STUN server must not stall gathering: each srflx transaction gives up after this.
    gathering_timeout: float = 5.0
    #: Regular nomination waits for better pairs at most this long after the first valid pair
    #: (the RFC leaves the wait to the agent; without a cap, an unreachable higher-priority pair
    #: would hold nomination for a whole transaction timeout).
    max_nomination_wait: float = 1.0
    #: RFC 7675: a consent check every ``consent_interval`` (randomised, 0.8 to 1.2 times), consent
    #: lost ``consent_timeout`` after the last authenticated response; ``disconnected_after``
    #: without one, the state becomes disconnected.
    consent_interval: float = 5.0
    consent_timeout: float = 30.0
    disconnected_after: float = 10.0
    #: A checking agent with nothing left to do by itself and a component without a pair — it
    #: waits for candidates from a peer that sent no end-of-candidates, or, controlled, for the
    #: peer's nomination — fails after this long without a sign of the peer (a remote candidate,
    #: an authenticated check). The RFCs set no limit; without one such a wait never ends.
    idle_timeout: float = 30.0
    #: With end-of-candidates and no pair at all for a component (no remote candidate of a
    #: usable family: a browser's unresolvable mDNS names, say), the peer's own checks may still
    #: bring peer-reflexive candidates (RFC 8445 §7.3.1.3): they get this long to arrive.
    peer_reflexive_wait: float = 5.0
    #: Tr: a Binding indication keeps the selected pair alive after this much silence (§11).
    keepalive_interval: float = 15.0
    #: ICE-TCP (RFC 6544): which TCP candidates to make of each TCP base the driver declares —
    #: passive (we accept connections) and active (we connect; signalled with port 9) by default,
    #: simultaneous-open too when listed (it needs a base of its own,
    #: ``Agent.add_tcp_base(..., simultaneous_open=True)``). Empty: no ICE-TCP at all, and the
    #: peer's TCP candidates are ignored. Also takes the value strings (``("active",)``).
    tcp_types: tuple[TcpType, ...] = (TcpType.ACTIVE, TcpType.PASSIVE)
    #: How many TCP connections the agent holds at most, in any state, accepted ones included;
    #: past that an incoming connection replaces the oldest one that has not authenticated yet,
    #: or is refused (RFC 6544 leaves the bound to the agent; peers decide how many connect).
    max_tcp_connections: int = 32
    #: How many connections the agent may be opening at once; checks that need another wait.
    max_tcp_connecting: int = 8
    #: A connection we open must be established, and a connection we accept must bring an
    #: authenticated check, within this long; else it is closed (and a check on it fails).
    tcp_connect_timeout: float = 10.0
    #: Behind a 1:1 NAT: host candidates are offered with the public address in place of
    #: their base's (``"PUBLIC"`` for every local address of its family, ``"PUBLIC/PRIVATE"``
    #: for one; :mod:`stun.advertised`, like pion's NAT 1:1 IPs). The private address is not
    #: offered; a 1:1 NAT keeps ports. Also takes the text forms.
    advertised_addresses: tuple[AdvertisedAddress, ...] = ()
    #: Act as an ICE-lite agent (§2.5): host candidates only, answer checks, never send them.
    lite: bool = False
    #: The remote side is ICE-lite: we must be controlling (§6.1.1).
    remote_lite: bool = False
    #: Which candidates to use; also takes the value strings ``"all"`` and ``"relay"``.
    policy: Policy = Policy.ALL
    #: Local ufrag/pwd (RFC 8445 §5.3); drawn from ``rng`` when not given.
    local_username: str | None = None
    local_password: str | None = field(default=None, repr=False)
    #: The 64-bit tie-breaker (§16.1); drawn from ``rng`` when not given.
    tie_breaker: int | None = None
    software: str | None = None
    rng: RandomSource = field(default_factory=default_random, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", enum_member(Policy, self.policy, "policy"))
        for name in ("controlling", "lite", "remote_lite"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise LocalProtocolError(f"{name} must be True or False, not {value!r}")
        stun = tuple(server_address("a STUN server", server) for server in self.stun_servers)
        object.__setattr__(self, "stun_servers", stun)
        for server in self.turn_servers:
            if not isinstance(server, RelayServer):
                raise LocalProtocolError(f"turn_servers holds RelayServer values, not {server!r}")
        advertised = tuple(
            parse_advertised(value, "advertised_addresses", error=LocalProtocolError)
            for value in self.advertised_addresses
        )
        check_advertised(advertised, "advertised_addresses", error=LocalProtocolError)
        object.__setattr__(self, "advertised_addresses", advertised)
        tcp_types = tuple(enum_member(TcpType, t, "tcp_types") for t in self.tcp_types)
        if len(set(tcp_types)) != len(tcp_types):
            raise LocalProtocolError("tcp_types: each TCP type at most once")
        object.__setattr__(self, "tcp_types", _shared(tcp_types))
        if not self.streams or any(not 1 <= c <= 256 for c in self.streams):
            raise LocalProtocolError("streams: one or more streams of 1..256 components")
        object.__setattr__(self, "streams", _shared(self.streams))
        if not 0.005 <= self.pacing <= 1.0:
            raise LocalProtocolError("pacing (Ta) must be between 5 ms and 1 s (RFC 8445 §14.2)")
        for name in (
            "max_pairs",
            "max_remote_candidates",
            "max_local_peer_reflexive",
            "max_tcp_connections",
            "max_tcp_connecting",
        ):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be at least 1")
        timers = (self.gathering_timeout, self.max_nomination_wait, self.consent_interval)
        if min(*timers, self.idle_timeout, self.peer_reflexive_wait, self.tcp_connect_timeout) <= 0:
            raise LocalProtocolError("timeouts and intervals must be positive")
        if not self.disconnected_after < self.consent_timeout:
            raise LocalProtocolError("disconnected_after must be shorter than consent_timeout")
        if self.keepalive_interval < 15:
            raise LocalProtocolError("keepalive_interval (Tr) is at least 15 s (RFC 8445 §11)")
        if self.lite and self.policy is not Policy.ALL:
            raise LocalProtocolError("an ICE-lite agent has host candidates only (RFC 8445 §2.5)")
        if self.remote_lite and not self.controlling:
            raise LocalProtocolError("an agent talking to an ICE-lite peer must be controlling")
        if self.lite and self.remote_lite:
            raise LocalProtocolError("two ICE-lite agents cannot connect (RFC 8445 §2.5)")
        if self.tie_breaker is not None and not 0 <= self.tie_breaker < 2**64:
            raise LocalProtocolError("tie_breaker is a 64-bit unsigned integer")
