"""The sans-IO STUN Binding server (RFC 8489 §6.3, §9, §12).

Theory of operation. The server keeps no per-client state but a bounded table of token buckets,
one per source, that limits its 400 and 401 answers: every datagram is answered (or not) on
its own by :meth:`BindingServer.respond`, which the asyncio layer calls on its hot path;
:meth:`BindingServer.receive_datagram` wraps it in the five verbs (architecture.md §2). A datagram
goes through:

1. **Basic checks** (§6.3). It must decode as STUN, be a request (indications need no answer,
   responses match no transaction of ours) for the Binding method, and carry a correct FINGERPRINT
   if it carries one. Anything else is dropped silently: an unknown method, like any message that
   fails these checks, is discarded rather than answered with 400 — §6.3 says so, and a server that
   answers junk is a reflector. A request whose header is fine but whose attributes do not parse is
   dropped too: it is not well-formed STUN (§5, §14), and no one is served by a 400 to it.
2. **Authentication**, when configured (:mod:`stun.authentication`): short-term credentials
   (§9.1.3) or long-term credentials with stateless nonces (§9.2.4, :mod:`stun.nonces`).
   Failures become 400, 401 or 438 error responses, in the RFC's order of checks; a source gets
   at most ``failure_burst`` 400s and 401s at once and ``failure_rate`` a second
   (:class:`stun.limits.SourceRateLimiter`), the rest are dropped. A 401 is several times larger
   than the request it answers, and the request's source address can be spoofed: unlimited, the
   server would amplify floods aimed at others.
3. **Unknown comprehension-required attributes** become 420 with UNKNOWN-ATTRIBUTES (§6.3.1). The
   RFC 5780 attributes CHANGE-REQUEST, RESPONSE-PORT and PADDING count as unknown unless the server
   does behaviour discovery (``ServerConfig.behavior``) on the socket the request reached (over
   TCP and TLS only PADDING is honoured): a server that does not honour them says so (RFC 5389
   §12.2 asks exactly this of CHANGE-REQUEST), and never answers to another port or with a
   padded, amplified response.
4. **Behaviour discovery** (RFC 5780, :mod:`stun.behavior`), when configured: with
   ``discovery_requires_auth``, only the requests that use CHANGE-REQUEST, RESPONSE-PORT or
   PADDING are authenticated (step 2); without authentication such a request is limited to
   ``discovery_rate`` a second per source (§9); the answer
   leaves from the socket CHANGE-REQUEST names, to RESPONSE-PORT, with OTHER-ADDRESS,
   RESPONSE-ORIGIN and PADDING no larger than the request (:meth:`BindingServer.answer` says
   which socket sends it where).
5. **Success**: XOR-MAPPED-ADDRESS with the request's source (§6.3.1.1) and SOFTWARE. An RFC 3489
   request (no magic cookie, accepted when ``classic_compatibility`` is on, as §12 recommends for
   a stand-alone server) gets MAPPED-ADDRESS instead and the cookie field echoed (RFC 5389 §12.2),
   and no SOFTWARE, whose unaligned length classic parsers mishandle.

Every response carries FINGERPRINT if and only if the request did, and MESSAGE-INTEGRITY or
MESSAGE-INTEGRITY-SHA256 whenever the request authenticated (the 420 and 438 that follow a good
integrity check included). Error responses to requests that did not authenticate carry only what the
RFC requires, so that a spoofed request buys an attacker as few bytes as possible.

The credentials and authenticators of step 2 live in :mod:`stun.authentication` (the TURN server
uses them too), the outcomes and their counts in :mod:`stun.outcomes`; this module re-exports both
modules' public names.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ._version import DEFAULT_SOFTWARE
from .address import Address
from .attributes import (
    MAGIC_COOKIE,
    Attribute,
    AttrType,
    ChangeRequest,
    MappedAddress,
    Padding,
    ResponsePort,
    Software,
    UnknownAttributes,
    XorMappedAddress,
)
from .authentication import (
    Authenticated,
    Authentication,
    LongTermAuthenticator,
    LongTermCredentials,
    LongTermKey,
    Presented,
    Rejected,
    ShortTermAuthenticator,
    ShortTermCredentials,
)
from .behavior import (
    DEFAULT_PADDED_SIZE,
    DISCOVERY_ATTRIBUTES,
    BehaviorAddresses,
    padding_for,
    plan_answer,
    stream_attributes,
)
from .datagram import Datagram
from .errors import ClassicStunError, DecodeError, LocalProtocolError
from .events import StunEvent
from .integrity import fingerprint as crc32_fingerprint
from .limits import SourceRateLimiter, source_key
from .message import HEADER_SIZE, Integrity, Message, MessageClass, Method, message_type
from .nonces import DEFAULT_NONCE_LIFETIME, check_nonce_settings
from .outcomes import DROPPED, Outcome, ServerStats
from .randomness import RandomSource, default_random

__all__ = [
    "DROPPED",
    "Authenticated",
    "Authentication",
    "BindingServer",
    "LongTermAuthenticator",
    "LongTermCredentials",
    "LongTermKey",
    "Outcome",
    "Presented",
    "Rejected",
    "ServerConfig",
    "ServerStats",
    "ShortTermAuthenticator",
    "ShortTermCredentials",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """How a :class:`BindingServer` answers; validated when built."""

    #: SOFTWARE in responses (§6.3.1.1: SHOULD; §16.1.2 asks that it be configurable).
    software: str | None = DEFAULT_SOFTWARE
    #: ``None`` for a basic server (§12 advises no authentication), or the credentials to check.
    authentication: Authentication | None = None
    #: How long a long-term nonce stays valid, in seconds (:mod:`stun.nonces`).
    nonce_lifetime: float = DEFAULT_NONCE_LIFETIME
    #: The nonce MAC key: servers that share it accept each other's nonces. From ``rng`` if unset.
    nonce_secret: bytes | None = field(default=None, repr=False)
    #: Answer RFC 3489 requests (no magic cookie) with MAPPED-ADDRESS (§12; RFC 5389 §12.2).
    classic_compatibility: bool = True
    #: 400 and 401 answers per second and source (an IPv4 address, an IPv6 /64), with this burst;
    #: beyond that the requests are dropped (counted as :attr:`Outcome.RATE_LIMITED`), so that
    #: the server is no reflector of challenges larger than the requests (a UDP request's source
    #: can be spoofed). The table of sources holds at most ``failure_table_size``.
    failure_rate: float = 2.0
    failure_burst: int = 20
    failure_table_size: int = 10_000
    #: NAT behaviour discovery (RFC 5780): the server's primary and alternate address, on all four
    #: of whose combinations it listens; ``None`` refuses CHANGE-REQUEST, RESPONSE-PORT and
    #: PADDING with 420 and sends no OTHER-ADDRESS or RESPONSE-ORIGIN.
    behavior: BehaviorAddresses | None = None
    #: Unauthenticated requests using CHANGE-REQUEST, RESPONSE-PORT or PADDING a second per
    #: source, with this burst; the rest are dropped (RFC 5780 §9). Their table of sources holds
    #: at most ``failure_table_size``.
    discovery_rate: float = 5.0
    discovery_burst: int = 30
    #: With ``authentication``: only requests that use CHANGE-REQUEST, RESPONSE-PORT or PADDING
    #: must authenticate; plain Binding requests are answered without (RFC 5780 §9).
    discovery_requires_auth: bool = False
    #: The size (bytes of STUN message) an authenticated request's PADDING asks the answer to
    #: grow to; unauthenticated answers grow no larger than their request (RFC 5780 §7.6, §9).
    padded_size: int = DEFAULT_PADDED_SIZE
    rng: RandomSource = field(default_factory=default_random, repr=False)

    def __post_init__(self) -> None:
        if self.software is not None and not (
            len(self.software) < 128 and len(self.software.encode()) <= 509
        ):
            raise LocalProtocolError("SOFTWARE must be under 128 characters (RFC 8489 §14.14)")
        check_nonce_settings(self.nonce_secret, self.nonce_lifetime)
        if not 0 < self.failure_rate < float("inf"):
            raise LocalProtocolError("failure_rate must be positive")
        for name in ("failure_burst", "failure_table_size", "discovery_burst"):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be at least 1")
        if not 0 < self.discovery_rate < float("inf"):
            raise LocalProtocolError("discovery_rate must be positive")
        if not HEADER_SIZE <= self.padded_size <= 65507:
            raise LocalProtocolError("padded_size must be 20 to 65507 bytes")
        if self.discovery_requires_auth and (self.authentication is None or self.behavior is None):
            raise LocalProtocolError("discovery_requires_auth needs authentication and behavior")


_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE_HEADER = struct.Struct("!HH")
_FINGERPRINT_ATTRIBUTE = struct.Struct("!HHI")
_SUCCESS_TYPE = message_type(Method.BINDING, MessageClass.SUCCESS_RESPONSE)
_REQUEST_TYPE = message_type(Method.BINDING, MessageClass.REQUEST)
#: A plain Binding request: the header alone, or the header and FINGERPRINT.
_PLAIN_SIZES = (HEADER_SIZE, HEADER_SIZE + _FINGERPRINT_ATTRIBUTE.size)
#: XOR-MAPPED-ADDRESS of an IPv4 client depends on its address only: remembered for this many.
_MAPPED_CACHE_SIZE = 4096

#: Known attributes whose RFC 5780 behaviour this server does not implement, answered as unknown.
_UNHONOURED = frozenset((ChangeRequest, ResponsePort, Padding))
#: What a behaviour-discovery server cannot honour over TCP or TLS: the answer goes back on the
#: connection (RFC 5780 §7.2, §7.5).
_UNHONOURED_ON_STREAMS = frozenset((ChangeRequest, ResponsePort))


def _uses_discovery(attributes: list[Attribute]) -> bool:
    """Whether a request carries an attribute that could aim or grow its answer (RFC 5780 §9)."""
    return any(isinstance(attribute, DISCOVERY_ATTRIBUTES) for attribute in attributes)


class BindingServer:
    """A stateless STUN Binding server, sans-IO (architecture.md §2 verbs plus :meth:`respond`)."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config = config or ServerConfig()
        self.stats = ServerStats()
        self._classic = config.classic_compatibility
        self._software: tuple[Attribute, ...] = (
            (Software(config.software),) if config.software is not None else ()
        )
        self._software_bytes = Message(
            Method.BINDING, MessageClass.SUCCESS_RESPONSE, bytes(12), self._software
        ).encode()[HEADER_SIZE:]
        self._authenticator: ShortTermAuthenticator | LongTermAuthenticator | None = None
        credentials = config.authentication
        if isinstance(credentials, ShortTermCredentials):
            self._authenticator = ShortTermAuthenticator(credentials)
        elif isinstance(credentials, LongTermCredentials):
            self._authenticator = LongTermAuthenticator.with_nonces(
                credentials,
                secret=config.nonce_secret,
                lifetime=config.nonce_lifetime,
                rng=config.rng,
            )
        self._failures = SourceRateLimiter(
            rate=config.failure_rate,
            burst=config.failure_burst,
            max_entries=config.failure_table_size,
        )
        self._behavior = config.behavior
        self._behavior_sockets = frozenset(config.behavior.sockets if config.behavior else ())
        self._auth_discovery_only = config.discovery_requires_auth
        self._discovery_limiter = SourceRateLimiter(
            rate=config.discovery_rate,
            burst=config.discovery_burst,
            max_entries=config.failure_table_size,
        )
        self._outgoing: list[Datagram] = []
        #: Whether plain requests may take the lean path: with authentication or behaviour
        #: discovery, every answer needs what only the typed path adds.
        self._lean = self._authenticator is None and self._behavior is None
        #: The XOR-MAPPED-ADDRESS and SOFTWARE of recent IPv4 clients, bounded; keyed by
        #: ``(host, port)``, an :class:`Address` or the socket's own address tuple (equal).
        self._mapped: dict[tuple[Any, ...], bytes] = {}

    @property
    def discovery_limited_sources(self) -> int:
        """Sources whose behaviour-discovery budget is remembered now (at most
        ``failure_table_size``)."""
        return len(self._discovery_limiter)

    @property
    def rate_limited_sources(self) -> int:
        """Sources whose 400/401 budget is remembered now (at most ``failure_table_size``)."""
        return len(self._failures)

    def answer(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> Datagram | None:
        """The response to one UDP datagram that reached the socket ``local`` from ``remote``:
        which socket sends it (``Datagram.local``) to where (``Datagram.remote``), or ``None`` to
        send nothing. Without ``behavior`` that is always back from ``local`` to ``remote``;
        with it, CHANGE-REQUEST and RESPONSE-PORT decide (RFC 5780 §6.1)."""
        result = self._process(data, local, remote, now, False)
        if result is None or isinstance(result, Datagram):
            return result
        return Datagram(result, local, remote)

    def respond(
        self, data: bytes, local: Address | None, remote: Address, now: float, *,
        stream: bool = False,
    ) -> bytes | None:  # fmt: skip
        """The response to one datagram (or, with ``stream``, one message of a TCP or TLS
        connection) from ``remote``, to send back where it came from, or ``None`` to send nothing.

        ``local`` is the socket the datagram arrived on. A server with ``behavior`` is driven with
        :meth:`answer` over UDP, as its answer may leave from another socket; given such a
        request, this sends nothing. Peer input never raises; the outcome is counted in
        :attr:`stats`.
        """
        result = self._process(data, local, remote, now, stream)
        return None if isinstance(result, Datagram) else result

    def _process(
        self, data: bytes, local: Address | None, remote: Address, now: float, stream: bool
    ) -> bytes | Datagram | None:
        """The response as bytes to send back the way the request came, or a :class:`Datagram`
        when it leaves from another socket or goes to another port (RFC 5780)."""
        answer = self.respond_plain(data, remote)
        if answer is not None:
            return answer
        return self._process_typed(data, local, remote, now, stream)

    def respond_plain(self, data: bytes, source: tuple[Any, ...]) -> bytes | None:
        """The answer to a plain Binding request over UDP, from its bytes and the socket's own
        address tuple of ``source`` (no :class:`Address` built), counted as :meth:`respond`
        counts it; ``None`` when the request is anything else, or the server authenticates or
        does behaviour discovery: then :meth:`respond` decides. A driver's hot path calls this
        first (:mod:`stun.aio_server`)."""
        if self._lean and len(data) in _PLAIN_SIZES:
            answer = self._plain_binding(data, source)
            if answer is not None:
                self.stats.counts[Outcome.ANSWERED] += 1
                return answer
        return None

    def _plain_binding(self, data: bytes, remote: tuple[Any, ...]) -> bytes | None:
        """The lean path (no authentication, no behaviour discovery configured): a Binding
        request with no attribute but FINGERPRINT, answered from the header alone; ``None``
        sends anything else, and a FINGERPRINT that does not match, down the typed path, which
        decides and counts it. :meth:`_process_typed` gives the same bytes (a property test
        holds them equal)."""
        kind, length, cookie, transaction_id = _HEADER.unpack_from(data)
        if kind != _REQUEST_TYPE or cookie != MAGIC_COOKIE or length != len(data) - HEADER_SIZE:
            return None
        fingerprint = length != 0
        if fingerprint:
            attr_type, attr_length, value = _FINGERPRINT_ATTRIBUTE.unpack_from(data, HEADER_SIZE)
            if (
                attr_type != AttrType.FINGERPRINT
                or attr_length != 4
                or value != crc32_fingerprint(data[:HEADER_SIZE])
            ):
                return None
        return self._unprotected_success(transaction_id, remote, fingerprint)

    def _process_typed(
        self, data: bytes, local: Address | None, remote: Address, now: float, stream: bool
    ) -> bytes | Datagram | None:
        """:meth:`_process` through the typed message: every request the lean path leaves."""
        counts = self.stats.counts
        try:
            request = Message.decode(data, allow_classic=self._classic)
        except ClassicStunError:
            counts[Outcome.CLASSIC] += 1
            return None
        except DecodeError:
            counts[Outcome.MALFORMED] += 1
            return None
        if request.message_class is not MessageClass.REQUEST:
            counts[Outcome.NOT_A_REQUEST] += 1
            return None
        if request.method != Method.BINDING:
            counts[Outcome.UNSUPPORTED_METHOD] += 1
            return None
        fingerprint = request.has_fingerprint
        if fingerprint and not request.check_fingerprint():
            counts[Outcome.BAD_FINGERPRINT] += 1
            return None
        key = None
        integrity = Integrity.SHA1
        discovery = self._behavior is not None and _uses_discovery(request.attributes)
        if self._authenticator is not None and (discovery or not self._auth_discovery_only):
            result = self._authenticator.authenticate(request, remote, now)
            if isinstance(result, Rejected):
                # A 438 needs the key: only a client that holds it can cause one.
                if result.code != 438 and not self._failures.allow(source_key(remote.host), now):
                    counts[Outcome.RATE_LIMITED] += 1
                    return None
                counts[result.outcome] += 1
                return self._error(request, result, fingerprint)
            key = result.key
            integrity = result.integrity
        unknown = self._unknown_attributes(request, local, stream)
        if unknown:
            counts[Outcome.UNKNOWN_ATTRIBUTE] += 1
            rejected = Rejected(
                420, Outcome.UNKNOWN_ATTRIBUTE, (UnknownAttributes(unknown),), key, integrity
            )
            return self._error(request, rejected, fingerprint)
        if (
            discovery
            and key is None
            and not self._discovery_limiter.allow(source_key(remote.host), now)
        ):
            counts[Outcome.DISCOVERY_RATE_LIMITED] += 1
            return None
        if discovery and not stream:
            response_port = request.get(ResponsePort)
            if response_port is not None and response_port.port == 0:
                counts[Outcome.BAD_RESPONSE_PORT] += 1
                rejected = Rejected(400, Outcome.BAD_RESPONSE_PORT, (), key, integrity)
                return self._error(request, rejected, fingerprint)
        counts[Outcome.ANSWERED] += 1
        if self._behavior is not None and local is not None and not request.is_classic:
            return self._discovery_success(
                request, len(data), local, remote, stream, (key, integrity, fingerprint)
            )
        if request.is_classic:
            answer: tuple[Attribute, ...] = (MappedAddress(remote),)
        elif key is None:
            return self._unprotected_success(request.transaction_id, remote, fingerprint)
        else:
            answer = (XorMappedAddress(remote), *self._software)
        return request.success_response(answer).encode(
            key=key, integrity=integrity, fingerprint=fingerprint
        )

    def _unprotected_success(
        self, transaction_id: bytes, remote: tuple[Any, ...], fingerprint: bool
    ) -> bytes:
        """The hot path: what ``Message.encode`` would make of XOR-MAPPED-ADDRESS and SOFTWARE,
        packed directly (a test holds the two to the same bytes).
        """
        body = self._mapped.get(remote)
        if body is None:
            value = XorMappedAddress(Address(remote[0], remote[1])).encode_value(transaction_id)
            body = _ATTRIBUTE_HEADER.pack(AttrType.XOR_MAPPED_ADDRESS, len(value)) + value
            body += self._software_bytes
            if len(value) == 8:  # IPv4: the mask is the cookie alone (§14.2), so it keeps
                if len(self._mapped) >= _MAPPED_CACHE_SIZE:
                    self._mapped.clear()
                self._mapped[remote] = body
        if not fingerprint:
            return _HEADER.pack(_SUCCESS_TYPE, len(body), MAGIC_COOKIE, transaction_id) + body
        covered = _HEADER.pack(_SUCCESS_TYPE, len(body) + 8, MAGIC_COOKIE, transaction_id) + body
        crc = crc32_fingerprint(covered)
        return covered + _FINGERPRINT_ATTRIBUTE.pack(AttrType.FINGERPRINT, 4, crc)

    def _discovery_success(
        self,
        request: Message,
        request_size: int,
        local: Address,
        remote: Address,
        stream: bool,
        protection: tuple[bytes | None, Integrity, bool],
    ) -> bytes | Datagram:
        """A success response with RFC 5780's attributes, from the socket and to the port the
        request asked for (:mod:`stun.behavior`)."""
        behavior = self._behavior
        assert behavior is not None
        plan = None if stream else plan_answer(behavior, request, local, remote)
        extra = plan.attributes if plan is not None else stream_attributes(behavior, local)
        answer: list[Attribute] = [XorMappedAddress(remote), *extra, *self._software]
        key, integrity, fingerprint = protection
        encoded = request.success_response(answer).encode(
            key=key, integrity=integrity, fingerprint=fingerprint
        )
        if request.has(Padding):
            limit = self.config.padded_size if key is not None else request_size
            answer.append(padding_for(len(encoded), min(limit, self.config.padded_size)))
            encoded = request.success_response(answer).encode(
                key=key, integrity=integrity, fingerprint=fingerprint
            )
        if plan is None or (plan.local == local and plan.remote == remote):
            return encoded
        return Datagram(encoded, plan.local, plan.remote)

    def _unknown_attributes(
        self, request: Message, local: Address | None, stream: bool
    ) -> tuple[int, ...]:
        """Comprehension-required types to list in a 420, each once, in the request's order: the
        RFC 5780 ones too, unless this server does behaviour discovery on the socket ``local``
        (over TCP and TLS it honours PADDING alone)."""
        unknown = list(request.unknown_required)
        unhonoured = _UNHONOURED
        if self._behavior is not None and not request.is_classic:
            if stream:
                unhonoured = _UNHONOURED_ON_STREAMS
            elif local in self._behavior_sockets:
                unhonoured = frozenset()
        for attribute in request.attributes:
            if type(attribute) in unhonoured:
                unknown.append(attribute.attr_type)
        return tuple(dict.fromkeys(unknown)) if unknown else ()

    def _error(self, request: Message, rejected: Rejected, fingerprint: bool) -> bytes:
        attributes = list(rejected.attributes)
        if rejected.key is not None and not request.is_classic:
            attributes += self._software
        response = request.error_response(rejected.code, attributes=attributes)
        return response.encode(
            key=rejected.key, integrity=rejected.integrity, fingerprint=fingerprint
        )

    # ------------------------------------------------------------------ sans-IO verbs

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        """Feed one datagram; its response, if any, waits in :meth:`datagrams_to_send`."""
        response = self.answer(data, local, remote, now)
        if response is not None:
            self._outgoing.append(response)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Drain the responses waiting to be sent."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def get_timer(self) -> float | None:
        """Always ``None``: a stateless server has nothing to time."""
        return None

    def handle_timer(self, now: float) -> None:
        """Nothing to do (see :meth:`get_timer`)."""

    def next_event(self) -> StunEvent | None:
        """Always ``None``: answering Binding requests is not news to the application."""
        return None
