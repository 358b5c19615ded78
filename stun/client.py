"""The sans-IO STUN client: requests to one server, with the long-term credential dance.

Theory of operation. :meth:`ClientSession.request` queues a request and returns a handle. Each
request runs as a :class:`~stun.transaction.ClientTransaction` (retransmitted over UDP, timed out
over TCP/TLS); at most ``max_outstanding`` run at once (RFC 8489 §6.2 suggests ten), the rest wait.
Responses are matched by transaction ID and source address, then:

* 401 Unauthenticated (§9.2.5): with credentials, retry once with USERNAME (or USERHASH when the
  nonce cookie asks for anonymity), REALM, NONCE, PASSWORD-ALGORITHMS echoed and the first
  PASSWORD-ALGORITHM we support, and MESSAGE-INTEGRITY (MD5 key) or MESSAGE-INTEGRITY-SHA256 (when
  the server offered algorithms). The bid-down check: a nonce cookie announcing password algorithms
  with no PASSWORD-ALGORITHMS attribute ends the request.
* 438 Stale Nonce: retry once with the fresh NONCE.
* 300 Try Alternate (§10): move to the first ALTERNATE-SERVER of the same family, once per request
  (and only for requests that allow it). An ALTERNATE-SERVER no datagram can go to (port 0, the
  unspecified, multicast or broadcast address), or on loopback when the server is not, is ignored.
* 5xx: retry, at most ``max_server_error_retries`` times (§6.3.4).
* Anything else ends the request with :class:`~stun.errors.ErrorResponse`.

Once authenticated, later requests carry the cached realm, nonce and key (§9.2.3.2). A response that
fails its integrity check is discarded as if never received over UDP (retransmissions go on) and
ends the transaction over TCP/TLS (§9.2.5); a UDP transaction that saw only such responses ends in
:class:`~stun.errors.IntegrityError` rather than a timeout.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._version import DEFAULT_SOFTWARE
from .address import Address, is_destination, is_loopback
from .attributes import (
    AlternateServer,
    Attribute,
    ErrorCode,
    MappedAddress,
    MessageIntegrity,
    MessageIntegritySha256,
    Nonce,
    OtherAddress,
    PasswordAlgorithm,
    PasswordAlgorithms,
    Realm,
    ResponseOrigin,
    Software,
    Userhash,
    Username,
    XorMappedAddress,
)
from .datagram import Datagram
from .errors import (
    DecodeError,
    ErrorResponse,
    IntegrityError,
    LocalProtocolError,
    StunError,
    TransactionTimeout,
)
from .events import RequestFailed, RequestSucceeded, StunEvent
from .integrity import (
    PasswordAlgorithmId,
    SecurityFeatures,
    long_term_key,
    nonce_features,
    userhash,
)
from .message import Integrity, Message, MessageClass, Method, new_transaction_id
from .randomness import RandomSource, default_random
from .transaction import ClientTransaction, RtoCache, TransactionConfig, TransactionState


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """A long-term credential: a username and password shared with the server (RFC 8489 §9.2)."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """How a :class:`ClientSession` behaves; every default is the RFC's or a documented choice."""

    transaction: TransactionConfig = field(default_factory=TransactionConfig)
    #: Long-term credentials, used only once the server challenges with 401.
    credentials: Credentials | None = None
    #: SOFTWARE sent with each request (§6.1: SHOULD); ``None`` sends none.
    software: str | None = DEFAULT_SOFTWARE
    #: Append FINGERPRINT to requests (§7).
    fingerprint: bool = True
    #: TCP or TLS: no retransmissions, Ti timeout (§6.2.2).
    reliable: bool = False
    #: Follow 300 Try Alternate to ALTERNATE-SERVER, at most once per request (§10).
    follow_alternate_server: bool = True
    #: Password algorithms we support, in no particular order: the server's order decides (§9.2.5).
    password_algorithms: tuple[PasswordAlgorithmId, ...] = (
        PasswordAlgorithmId.SHA256,
        PasswordAlgorithmId.MD5,
    )
    #: How many times a 5xx answer is retried (§6.3.4 says SHOULD be limited to 4).
    max_server_error_retries: int = 4
    #: Transactions in flight to the server at once (§6.2: SHOULD limit to ten).
    max_outstanding: int = 10
    rng: RandomSource = field(default_factory=default_random)

    def __post_init__(self) -> None:
        if self.max_outstanding < 1:
            raise LocalProtocolError("max_outstanding must be at least 1")
        if self.max_server_error_retries < 0:
            raise LocalProtocolError("max_server_error_retries must not be negative")
        if not self.password_algorithms:
            raise LocalProtocolError("password_algorithms must name at least one algorithm")


@dataclass(frozen=True, slots=True)
class Authentication:
    """What a server's challenge settled for a session (RFC 8489 §9.2.5), for diagnostics.

    ``realm`` is the server's REALM; ``algorithm`` the password algorithm in use — MD5 keys when
    the server offered no PASSWORD-ALGORITHMS (RFC 5389's mechanism, ``offered`` empty);
    ``offered`` the algorithms the server listed, as numbers, in its order (unknown ones too);
    ``userhash`` whether its nonce cookie asked for USERHASH in place of USERNAME (§9.2.1).
    """

    realm: str
    algorithm: PasswordAlgorithmId
    offered: tuple[int, ...]
    userhash: bool


@dataclass(slots=True)
class _AuthState:
    """What a 401 taught us about the server (RFC 8489 §9.2.3.2): cached for later requests."""

    realm: str
    nonce: str
    key: bytes
    algorithm: PasswordAlgorithmId | None
    offered: PasswordAlgorithms | None
    anonymous: bool

    @property
    def integrity(self) -> Integrity:
        return Integrity.SHA1 if self.offered is None else Integrity.SHA256

    def attributes(self, credentials: Credentials) -> list[Attribute]:
        identity: Attribute = (
            Userhash(userhash(credentials.username, self.realm))
            if self.anonymous
            else Username(credentials.username)
        )
        attributes: list[Attribute] = [identity, Realm(self.realm), Nonce(self.nonce)]
        if self.offered is not None and self.algorithm is not None:
            attributes += [self.offered, PasswordAlgorithm(self.algorithm)]
        return attributes


@dataclass(slots=True)
class _Request:
    handle: int
    method: int
    attributes: list[Attribute]
    #: Whether a 300 Try Alternate may move the session (RFC 8489 §10).
    follow_alternate: bool = True
    transaction: ClientTransaction | None = None
    #: Where the current attempt went: retransmissions follow it, responses must come from it.
    server: Address | None = None
    key: bytes | None = None
    challenged: bool = False
    stale_retried: bool = False
    redirected: bool = False
    server_errors: int = 0
    integrity_failures: int = 0
    #: Forgotten by :meth:`ClientSession.cancel` while queued: skipped when its turn comes.
    cancelled: bool = False


class ClientSession:
    """A session with one STUN server, sans-IO (architecture.md §2): requests, RTO, credentials."""

    def __init__(
        self,
        server: Address,
        *,
        config: ClientConfig | None = None,
        rto_cache: RtoCache | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        #: Where requests go; ALTERNATE-SERVER can move it.
        self.server = server
        self._rto_cache = rto_cache or RtoCache(self.config.transaction)
        self._handles = itertools.count(1)
        self._auth: _AuthState | None = None
        self._waiting: deque[_Request] = deque()
        #: How many requests in ``_waiting`` were cancelled (they are dropped lazily).
        self._cancelled_waiting = 0
        self._in_flight: dict[bytes, _Request] = {}
        #: Every request not yet ended, by handle (so that cancelling one costs O(1)).
        self._requests: dict[int, _Request] = {}
        self._outgoing: list[Datagram] = []
        self._events: deque[StunEvent] = deque()
        #: Datagrams dropped, by reason; for diagnostics and tests.
        self.dropped: dict[str, int] = {}

    # ------------------------------------------------------------------ commands

    def request(
        self,
        method: int = Method.BINDING,
        attributes: Iterable[Attribute] = (),
        *,
        now: float,
        follow_alternate: bool = True,
    ) -> int:
        """Queue a request; return the handle its outcome event (succeeded or failed) will carry.

        With ``follow_alternate`` off, a 300 Try Alternate ends the request instead of moving
        the session (``config.follow_alternate_server`` off does so for every request).
        Raises :class:`LocalProtocolError` at once for a method that is not an ``int``, an
        attribute that is not an :class:`~stun.attributes.Attribute`, or a request that cannot
        be encoded; a request that waited its turn and then cannot be sent (a server's challenge
        asked for attributes that do not fit) fails with that error as its event instead.
        """
        if not isinstance(method, int) or isinstance(method, bool):
            raise LocalProtocolError(f"method must be an int (a stun.Method), not {method!r}")
        try:
            attributes = list(attributes)
        except TypeError:
            raise LocalProtocolError(
                f"attributes must be an iterable of stun attributes, not {attributes!r}"
            ) from None
        for attribute in attributes:
            if not isinstance(attribute, Attribute):
                raise LocalProtocolError(
                    f"attributes must be stun attributes (Software(...), ...), not {attribute!r}"
                )
        request = _Request(next(self._handles), method, attributes, follow_alternate)
        if not self._waiting and len(self._in_flight) < self.config.max_outstanding:
            self._send(request, now)
        else:
            self._waiting.append(request)
        self._requests[request.handle] = request
        return request.handle

    def cancel(self, handle: int) -> None:
        """Forget a request; no event will be produced for it."""
        request = self._requests.pop(handle, None)
        if request is None:
            return
        if request.transaction is not None:
            del self._in_flight[request.transaction.transaction_id]
            return
        request.cancelled = True
        self._cancelled_waiting += 1
        if 2 * self._cancelled_waiting > len(self._waiting) + 16:
            self._waiting = deque(r for r in self._waiting if not r.cancelled)
            self._cancelled_waiting = 0

    @property
    def in_flight(self) -> int:
        """Transactions under way, never more than ``max_outstanding``."""
        return len(self._in_flight)

    @property
    def waiting(self) -> int:
        """Requests queued until a transaction ends."""
        return len(self._waiting) - self._cancelled_waiting

    @property
    def authenticated(self) -> bool:
        """Whether a realm, nonce and key are cached from an earlier challenge."""
        return self._auth is not None

    @property
    def authentication(self) -> Authentication | None:
        """What the server's challenge settled (realm, algorithm, USERHASH), once challenged."""
        auth = self._auth
        if auth is None:
            return None
        offered = auth.offered.algorithms if auth.offered is not None else ()
        return Authentication(
            realm=auth.realm,
            algorithm=auth.algorithm or PasswordAlgorithmId.MD5,
            offered=tuple(entry.algorithm for entry in offered),
            userhash=auth.anonymous,
        )

    def authenticate_like(self, other: ClientSession) -> None:
        """Start with what ``other`` learned from the same server's challenge (realm, nonce,
        key): for a request on a second connection that must carry the credentials of the
        first, such as a TURN ConnectionBind (RFC 6062 §4.4). A 401 or 438 is still answered
        as usual."""
        auth = other._auth
        self._auth = dataclasses.replace(auth) if auth is not None else None

    # ------------------------------------------------------------------ sans-IO verbs

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        """Feed one datagram from the server; anything that is not a response of ours is dropped."""
        try:
            response = Message.decode(data)
        except DecodeError:
            self._drop("malformed")
            return
        if response.message_class not in (
            MessageClass.SUCCESS_RESPONSE,
            MessageClass.ERROR_RESPONSE,
        ):
            self._drop("not a response")
            return
        request = self._in_flight.get(response.transaction_id)
        if request is None or request.transaction is None:
            self._drop("unknown transaction")
            return
        if not self.config.reliable and remote != request.server:
            self._drop("wrong source")
            return
        if response.method != request.method:
            self._drop("method mismatch")
            return
        self._handle_response(request, response, now)
        self._start_waiting(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Drain what must be sent now."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def get_timer(self) -> float | None:
        """The earliest retransmission or timeout deadline."""
        deadlines = [
            deadline
            for request in self._in_flight.values()
            if request.transaction is not None
            and (deadline := request.transaction.get_timer()) is not None
        ]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Retransmit what is due and end what has timed out."""
        for request in list(self._in_flight.values()):
            transaction = request.transaction
            if transaction is None:
                continue
            resend = transaction.handle_timer(now)
            if resend is not None and request.server is not None:
                self._outgoing.append(Datagram(resend, None, request.server))
            elif transaction.state is TransactionState.TIMED_OUT:
                error: StunError = (
                    IntegrityError("every response failed its integrity check")
                    if request.integrity_failures
                    else TransactionTimeout(
                        f"no response from {request.server} after {transaction.requests_sent} "
                        f"request(s) in {now - transaction.started_at:.1f} s"
                    )
                )
                self._fail(request, error)
        self._start_waiting(now)

    def next_event(self) -> StunEvent | None:
        """The next thing that happened, or ``None``."""
        return self._events.popleft() if self._events else None

    def connection_lost(self, now: float) -> None:
        """The TCP/TLS connection closed: every transaction in progress fails (§6.2.2)."""
        self.fail_all(TransactionTimeout(f"connection to {self.server} closed"), now)

    def fail_all(self, error: StunError, now: float) -> None:
        """End every request, in flight or waiting, with ``error``: the driver learnt that none
        can be answered — the connection closed, or (over UDP) a request could not even leave
        this host (:class:`~stun.errors.ServerUnreachable`), which retransmitting it for 39.5 s
        would not change. A later request starts afresh."""
        for request in list(self._in_flight.values()):
            self._fail(request, error)
        while self._waiting:
            request = self._waiting.popleft()
            if not request.cancelled:
                self._fail(request, error)
        self._cancelled_waiting = 0

    # ------------------------------------------------------------------ internals

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _start_waiting(self, now: float) -> None:
        while self._waiting and len(self._in_flight) < self.config.max_outstanding:
            request = self._waiting.popleft()
            if request.cancelled:
                self._cancelled_waiting -= 1
                continue
            try:
                self._send(request, now)
            except LocalProtocolError as error:
                self._fail(request, error)

    def _send(self, request: _Request, now: float) -> None:
        """Start a new transaction for ``request`` (a new ID every time, RFC 8489 §5)."""
        config = self.config
        transaction_id = new_transaction_id(config.rng)
        attributes = list(request.attributes)
        if config.software is not None:
            attributes.append(Software(config.software))
        auth = self._auth
        key = None
        integrity = Integrity.SHA1
        if auth is not None and config.credentials is not None:
            attributes += auth.attributes(config.credentials)
            key = auth.key
            integrity = auth.integrity
        message = Message(request.method, MessageClass.REQUEST, transaction_id, attributes)
        data = message.encode(key=key, integrity=integrity, fingerprint=config.fingerprint)
        request.key = key
        request.server = self.server
        request.transaction = ClientTransaction(
            data,
            transaction_id,
            now=now,
            rto=self._rto_cache.rto(self.server.host, now),
            reliable=config.reliable,
            config=config.transaction,
        )
        self._in_flight[transaction_id] = request
        self._outgoing.append(Datagram(data, None, self.server))

    def _retry(self, request: _Request, now: float) -> None:
        assert request.transaction is not None
        del self._in_flight[request.transaction.transaction_id]
        request.transaction = None
        self._waiting.appendleft(request)

    def _finish(self, request: _Request) -> None:
        if request.transaction is not None:
            self._in_flight.pop(request.transaction.transaction_id, None)
        self._requests.pop(request.handle, None)

    def _fail(self, request: _Request, error: StunError) -> None:
        self._finish(request)
        self._events.append(RequestFailed(request.handle, error))

    def _handle_response(self, request: _Request, response: Message, now: float) -> None:
        transaction = request.transaction
        assert transaction is not None
        if response.unknown_required:
            unknown = ", ".join(f"0x{t:04X}" for t in response.unknown_required)
            self._fail(request, DecodeError(f"response has unknown required attributes {unknown}"))
            return
        # ERROR-CODE means something in an error response only; in a success it is ignored.
        failed = response.message_class is MessageClass.ERROR_RESPONSE
        error = response.get(ErrorCode) if failed else None
        if failed:
            if error is None:
                self._fail(request, DecodeError("error response without ERROR-CODE"))
                return
            if error.code in (401, 438):
                # Challenges carry no integrity (§9.2.4): either retry or report them as they are.
                if not self._challenge(request, response, error, now):
                    self._fail(request, ErrorResponse(error.code, error.reason, response))
                return
            if error.code == 400 and not response.has_integrity and request.key is not None:
                self._drop("unauthenticated 400")  # §9.2.5: as if never received
                return
        elif not self._nonce_consistent(response):
            self._drop("nonce cookie without PASSWORD-ALGORITHMS")
            return
        if request.key is not None and not response.check_integrity(request.key):
            if self.config.reliable:
                self._fail(request, IntegrityError("response failed its integrity check"))
            else:
                request.integrity_failures += 1
                self._drop("integrity")
            return
        if error is None:
            rtt = transaction.answered(now)
            server = request.server or self.server
            if not transaction.retransmitted:
                self._rto_cache.add_sample(server.host, rtt, now)
            self._finish(request)
            self._events.append(RequestSucceeded(request.handle, response, rtt, server))
            return
        transaction.answered(now)
        if error.code == 300 and self._redirect(request, response, now):
            return
        retries_left = request.server_errors < self.config.max_server_error_retries
        if 500 <= error.code <= 599 and retries_left:
            request.server_errors += 1
            self._retry(request, now)
            return
        self._fail(request, ErrorResponse(error.code, error.reason, response))

    @staticmethod
    def _nonce_consistent(response: Message) -> bool:
        nonce = response.get(Nonce)
        if nonce is None:
            return True
        features = nonce_features(nonce.value)
        return not (
            features is not None
            and features & SecurityFeatures.PASSWORD_ALGORITHMS
            and not response.has(PasswordAlgorithms)
        )

    def _challenge(
        self, request: _Request, response: Message, error: ErrorCode, now: float
    ) -> bool:
        """Answer a 401 or 438 with a new attempt (RFC 8489 §9.2.5); ``False`` ends the request."""
        credentials = self.config.credentials
        realm = response.get(Realm)
        nonce = response.get(Nonce)
        if credentials is None or nonce is None or not self._nonce_consistent(response):
            return False
        if error.code == 438:
            if request.stale_retried or self._auth is None:
                return False
            request.stale_retried = True
            self._auth.nonce = nonce.value
            if realm is not None and realm.value != self._auth.realm:
                return False
            self._retry(request, now)
            return True
        if request.challenged or realm is None:
            return False
        offered = response.get(PasswordAlgorithms)
        algorithm: PasswordAlgorithmId | None = None
        if offered is not None:
            supported = {int(a) for a in self.config.password_algorithms}
            choice = next((e for e in offered.algorithms if e.algorithm in supported), None)
            if choice is None:
                return False
            algorithm = PasswordAlgorithmId(choice.algorithm)
        features = nonce_features(nonce.value) or SecurityFeatures.NONE
        try:
            key = long_term_key(
                credentials.username,
                realm.value,
                credentials.password,
                algorithm or PasswordAlgorithmId.MD5,
            )
        except LocalProtocolError:
            return False
        self._auth = _AuthState(
            realm=realm.value,
            nonce=nonce.value,
            key=key,
            algorithm=algorithm,
            offered=offered,
            anonymous=bool(features & SecurityFeatures.USERNAME_ANONYMITY),
        )
        request.challenged = True
        self._retry(request, now)
        return True

    def _redirect(self, request: _Request, response: Message, now: float) -> bool:
        if (
            request.redirected
            or not request.follow_alternate
            or not self.config.follow_alternate_server
        ):
            return False
        origin = request.server or self.server
        current_v6 = ":" in origin.host
        target = next(
            (
                a.address
                for a in response.get_all(AlternateServer)
                if (":" in a.address.host) == current_v6
            ),
            None,
        )
        if target is None or target == origin:
            return False
        if not _usable_alternate(origin, target):
            self._drop("unusable ALTERNATE-SERVER")
            return False
        request.redirected = True
        if self.server != target:
            self.server = target
            self._auth = None  # credentials are per server (RFC 8489 §9.2.3)
        request.challenged = False
        request.stale_retried = False
        self._retry(request, now)
        return True


def _usable_alternate(origin: Address, target: Address) -> bool:
    """Whether a client of ``origin`` may move to ALTERNATE-SERVER ``target`` (RFC 8489 §10): an
    address datagrams can go to, and not this host's loopback unless the server was on it (a
    server must not turn its clients against their own host's services)."""
    return is_destination(target) and (is_loopback(origin.host) or not is_loopback(target.host))


@dataclass(frozen=True, slots=True)
class BindingResult:
    """What a Binding transaction taught us about the path to a server."""

    mapped_address: Address | None
    rtt: float
    server: Address
    software: str | None
    response_origin: Address | None
    other_address: Address | None
    features: tuple[str, ...]

    @classmethod
    def from_response(cls, response: Message, rtt: float, server: Address) -> BindingResult:
        """Read a Binding success response (RFC 8489 §6.3.3); MAPPED-ADDRESS if no XOR form."""
        xor_mapped = response.get(XorMappedAddress)
        mapped = response.get(MappedAddress)
        software = response.get(Software)
        origin = response.get(ResponseOrigin)
        other = response.get(OtherAddress)
        features: list[str] = []
        if xor_mapped is not None:
            features.append("XOR-MAPPED-ADDRESS (RFC 5389/8489)")
        if mapped is not None:
            features.append("MAPPED-ADDRESS (RFC 3489)")
        if response.has(MessageIntegrity):
            features.append("MESSAGE-INTEGRITY")
        if response.has(MessageIntegritySha256):
            features.append("MESSAGE-INTEGRITY-SHA256 (RFC 8489)")
        if response.check_fingerprint():
            features.append("FINGERPRINT")
        if origin is not None or other is not None:
            features.append("RESPONSE-ORIGIN/OTHER-ADDRESS (RFC 5780)")
        reflexive = xor_mapped or mapped
        return cls(
            mapped_address=reflexive.address if reflexive is not None else None,
            rtt=rtt,
            server=server,
            software=software.value if software else None,
            response_origin=origin.address if origin else None,
            other_address=other.address if other else None,
            features=tuple(features),
        )
