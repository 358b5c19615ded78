"""Request authentication for the STUN servers (RFC 8489 §9): the credentials a server checks and
the authenticators that check them, shared by the Binding server (:mod:`stun.server`) and the TURN
server (:mod:`turn.server.core`).

Short-term credentials (§9.1.3) are a key per USERNAME. Long-term credentials (§9.2.4) are a
realm and each user's keys, one per password algorithm; the long-term authenticator issues and
checks stateless nonces (:mod:`stun.nonces`). An authenticator answers a request with
:class:`Authenticated` (the user, the key and the integrity attribute to protect the answer with)
or :class:`Rejected` (the error code and attributes to answer with, in the RFC's order of checks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .address import Address
from .attributes import (
    AlgorithmEntry,
    Attribute,
    MessageIntegritySha256,
    Nonce,
    PasswordAlgorithm,
    PasswordAlgorithms,
    Realm,
    Userhash,
    Username,
)
from .errors import LocalProtocolError
from .integrity import (
    PasswordAlgorithmId,
    SecurityFeatures,
    long_term_key,
    nonce_features,
    short_term_key,
    userhash,
)
from .message import Integrity, Message
from .nonces import NonceIssuer, NonceStatus
from .outcomes import Outcome
from .randomness import RandomSource

# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True, kw_only=True, slots=True)
class ShortTermCredentials:
    """Short-term credentials (RFC 8489 §9.1): the HMAC key of each valid USERNAME.

    ``keys`` is read on every request, so a mapping that changes (or computes keys) is welcome.
    """

    keys: Mapping[str, bytes]

    @classmethod
    def from_passwords(cls, passwords: Mapping[str, str]) -> ShortTermCredentials:
        """Derive each key from its password: ``OpaqueString(password)`` (§9.1.1)."""
        return cls(keys={name: short_term_key(password) for name, password in passwords.items()})


_KEY_SIZES = {PasswordAlgorithmId.MD5: 16, PasswordAlgorithmId.SHA256: 32}


@dataclass(frozen=True, kw_only=True, slots=True)
class LongTermKey:
    """One user's long-term keys, one per password algorithm (RFC 8489 §9.2.2, §18.5.1).

    Servers store these hashes, not passwords. A user without an MD5 key cannot authenticate
    with RFC 5389 clients, which know no other algorithm.
    """

    md5: bytes | None = field(default=None, repr=False)
    sha256: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for algorithm in PasswordAlgorithmId:
            key = self.key_for(algorithm)
            if key is not None and len(key) != _KEY_SIZES[algorithm]:
                raise LocalProtocolError(
                    f"{algorithm.name} key must be {_KEY_SIZES[algorithm]} bytes, not {len(key)}"
                )
        if self.md5 is None and self.sha256 is None:
            raise LocalProtocolError("a long-term key needs at least one algorithm's key")

    @classmethod
    def from_password(
        cls,
        username: str,
        realm: str,
        password: str,
        algorithms: tuple[PasswordAlgorithmId, ...] = tuple(PasswordAlgorithmId),
    ) -> LongTermKey:
        """Hash ``username:realm:password`` for each algorithm in ``algorithms``."""
        keys = {a: long_term_key(username, realm, password, a) for a in algorithms}
        return cls(
            md5=keys.get(PasswordAlgorithmId.MD5), sha256=keys.get(PasswordAlgorithmId.SHA256)
        )

    def key_for(self, algorithm: int) -> bytes | None:
        """The key for a password algorithm, or ``None`` if this user has none for it."""
        if algorithm == PasswordAlgorithmId.MD5:
            return self.md5
        if algorithm == PasswordAlgorithmId.SHA256:
            return self.sha256
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class LongTermCredentials:
    """Long-term credentials (RFC 8489 §9.2): a realm and each user's keys.

    ``password_algorithms`` are offered in PASSWORD-ALGORITHMS, in preference order; empty means
    the RFC 5389 behaviour (MD5 keys, no PASSWORD-ALGORITHMS, no "Password algorithms" feature bit).
    ``username_anonymity`` accepts USERHASH in place of USERNAME and sets the "Username anonymity"
    bit, which tells clients to send USERHASH (§9.2.4, §14.4); the hashes are computed once, from
    the users present when the server is built.
    """

    realm: str
    users: Mapping[str, LongTermKey]
    password_algorithms: tuple[PasswordAlgorithmId, ...] = ()
    username_anonymity: bool = False

    def __post_init__(self) -> None:
        if not 0 < len(self.realm) < 128:
            raise LocalProtocolError("REALM must be 1 to 127 characters (RFC 8489 §14.9)")
        if len(set(self.password_algorithms)) != len(self.password_algorithms):
            raise LocalProtocolError("password_algorithms lists an algorithm twice")
        for name, keys in self.users.items():
            for algorithm in self.password_algorithms:
                if keys.key_for(algorithm) is None:
                    raise LocalProtocolError(f"user {name!r} has no {algorithm.name} key")

    @classmethod
    def from_passwords(
        cls,
        realm: str,
        passwords: Mapping[str, str],
        *,
        password_algorithms: tuple[PasswordAlgorithmId, ...] = (
            PasswordAlgorithmId.SHA256,
            PasswordAlgorithmId.MD5,
        ),
        username_anonymity: bool = False,
    ) -> LongTermCredentials:
        """Derive every user's MD5 and SHA-256 keys from plain passwords.

        Offers SHA-256 then MD5 by default: RFC 8489 clients pick SHA-256, and RFC 5389 clients,
        which send no PASSWORD-ALGORITHM, are served with MD5 as §9.2.4 provides.
        """
        users = {name: LongTermKey.from_password(name, realm, pw) for name, pw in passwords.items()}
        return cls(
            realm=realm,
            users=users,
            password_algorithms=password_algorithms,
            username_anonymity=username_anonymity,
        )

    @property
    def features(self) -> SecurityFeatures:
        """The security features the nonce cookie announces (§9.2, §18.1)."""
        features = SecurityFeatures.NONE
        if self.password_algorithms:
            features |= SecurityFeatures.PASSWORD_ALGORITHMS
        if self.username_anonymity:
            features |= SecurityFeatures.USERNAME_ANONYMITY
        return features


# --------------------------------------------------------------------------- authenticators


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request that passed authentication, and how to protect what answers it."""

    username: str
    key: bytes
    integrity: Integrity


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request that failed authentication: the error to answer it with.

    ``key`` is set only when the request's own integrity checked out (a 438), so that the error
    response can be protected with it.
    """

    code: int
    outcome: Outcome
    attributes: tuple[Attribute, ...] = ()
    key: bytes | None = None
    integrity: Integrity = Integrity.SHA1


class Presented(NamedTuple):
    """What a request presents to the long-term credential mechanism (RFC 8489 §9.2.4), read
    from a decoded :class:`Message` or from its bytes: the user (USERNAME, or the one USERHASH
    names; ``None`` for a hash of no user), REALM and NONCE, PASSWORD-ALGORITHM and
    PASSWORD-ALGORITHMS if present, and which integrity attribute it carries (SHA-256 if
    MESSAGE-INTEGRITY-SHA256)."""

    name: str | None
    realm: str
    nonce: str
    chosen: PasswordAlgorithm | None
    offered: PasswordAlgorithms | None
    integrity: Integrity


def _response_integrity(request: Message) -> Integrity:
    """MESSAGE-INTEGRITY-SHA256 if the request had it, else MESSAGE-INTEGRITY (§9.1.3)."""
    return Integrity.SHA256 if request.has(MessageIntegritySha256) else Integrity.SHA1


class ShortTermAuthenticator:
    """The server side of the short-term credential mechanism (RFC 8489 §9.1.3)."""

    def __init__(self, credentials: ShortTermCredentials) -> None:
        self.credentials = credentials

    def authenticate(
        self, request: Message, remote: Address, now: float
    ) -> Authenticated | Rejected:
        """Check USERNAME and integrity; errors carry no integrity, as the key is unknown."""
        username = request.get(Username)
        if username is None or not request.has_integrity:
            return Rejected(400, Outcome.INCOMPLETE_CREDENTIALS)
        key = self.credentials.keys.get(username.value)
        if key is None:
            return Rejected(401, Outcome.UNKNOWN_USER)
        if not request.check_integrity(key):
            return Rejected(401, Outcome.BAD_INTEGRITY)
        return Authenticated(username.value, key, _response_integrity(request))


class LongTermAuthenticator:
    """The server side of the long-term credential mechanism (RFC 8489 §9.2.4).

    Shared by the Binding server and the TURN server: :meth:`authenticate` runs the RFC's checks in
    its order; :meth:`challenge` is what every 401 and 438 carries.
    """

    def __init__(self, credentials: LongTermCredentials, nonces: NonceIssuer) -> None:
        if nonces.features != credentials.features:
            raise LocalProtocolError("the nonce issuer must announce the credentials' features")
        self.credentials = credentials
        self.nonces = nonces
        self._realm = Realm(credentials.realm)
        self._offered = (
            PasswordAlgorithms(tuple(AlgorithmEntry(a) for a in credentials.password_algorithms))
            if credentials.password_algorithms
            else None
        )
        self._userhashes: dict[bytes, str] = (
            {userhash(name, credentials.realm): name for name in credentials.users}
            if credentials.username_anonymity
            else {}
        )

    @classmethod
    def with_nonces(
        cls,
        credentials: LongTermCredentials,
        *,
        secret: bytes | None,
        lifetime: float,
        rng: RandomSource,
    ) -> LongTermAuthenticator:
        """An authenticator with its own stateless nonce issuer (:mod:`stun.nonces`)."""
        nonces = NonceIssuer(
            secret=secret, lifetime=lifetime, features=credentials.features, rng=rng
        )
        return cls(credentials, nonces)

    def challenge(self, client: Address, now: float) -> tuple[Attribute, ...]:
        """REALM, a fresh NONCE for ``client`` and PASSWORD-ALGORITHMS when offered."""
        nonce = Nonce(self.nonces.issue(client, now))
        if self._offered is None:
            return (self._realm, nonce)
        return (self._realm, nonce, self._offered)

    def authenticate(
        self, request: Message, remote: Address, now: float
    ) -> Authenticated | Rejected:
        """The checks of §9.2.4, in order; the first that fails decides the error."""
        if not request.has_integrity:
            return Rejected(401, Outcome.CHALLENGED, self.challenge(remote, now))
        username = request.get(Username)
        hashed = request.get(Userhash)
        realm = request.get(Realm)
        nonce = request.get(Nonce)
        if (username is None and hashed is None) or realm is None or nonce is None:
            return Rejected(400, Outcome.INCOMPLETE_CREDENTIALS)
        if username is not None:
            name: str | None = username.value
        else:
            assert hashed is not None
            name = self._userhashes.get(hashed.value)
        return self.verify(
            Presented(
                name,
                realm.value,
                nonce.value,
                request.get(PasswordAlgorithm),
                request.get(PasswordAlgorithms),
                _response_integrity(request),
            ),
            request.check_integrity,
            remote,
            now,
        )

    def verify(
        self,
        presented: Presented,
        integrity_matches: Callable[[bytes], bool],
        remote: Address,
        now: float,
    ) -> Authenticated | Rejected:
        """The checks of §9.2.4 from the third on (the request carries integrity, a user, REALM
        and NONCE): the password algorithm, the user and realm, ``integrity_matches`` with the
        user's key, the nonce. For :meth:`authenticate`, and for a server's lean path that reads
        the same attributes from a request's bytes."""
        negotiated = self._negotiated_algorithm(presented)
        if isinstance(negotiated, Rejected):
            return negotiated
        name = presented.name
        user = self.credentials.users.get(name) if name is not None else None
        algorithm = PasswordAlgorithmId.MD5 if negotiated is None else negotiated
        key = user.key_for(algorithm) if user is not None else None
        if name is None or key is None or presented.realm != self.credentials.realm:
            return Rejected(401, Outcome.UNKNOWN_USER, self.challenge(remote, now))
        if not integrity_matches(key):
            return Rejected(401, Outcome.BAD_INTEGRITY, self.challenge(remote, now))
        # §9.2.4: MESSAGE-INTEGRITY-SHA256 unless the request was processed as MD5 for want of
        # PASSWORD-ALGORITHM(S); then MESSAGE-INTEGRITY (or SHA-256 for a client that sent only it).
        integrity = Integrity.SHA256 if negotiated is not None else presented.integrity
        status = self.nonces.check(presented.nonce, remote, now)
        if status is not NonceStatus.VALID:
            outcome = Outcome.STALE_NONCE if status is NonceStatus.STALE else Outcome.INVALID_NONCE
            return Rejected(438, outcome, self.challenge(remote, now), key, integrity)
        return Authenticated(name, key, integrity)

    def _negotiated_algorithm(self, presented: Presented) -> int | Rejected | None:
        """The third check of §9.2.4: the PASSWORD-ALGORITHM the client chose, ``None`` if it chose
        none (the request is then processed as MD5), or a 400 if the choice cannot stand.
        """
        features = nonce_features(presented.nonce)
        if features is None or SecurityFeatures.PASSWORD_ALGORITHMS not in features:
            return None
        chosen = presented.chosen
        offered = presented.offered
        if chosen is None and offered is None:
            return None
        if (
            chosen is None
            or offered is None
            or offered != self._offered
            or AlgorithmEntry(chosen.algorithm, chosen.parameters) not in offered.algorithms
        ):
            return Rejected(400, Outcome.BID_DOWN)
        return chosen.algorithm


#: The credentials a server may check: short-term or long-term.
Authentication = ShortTermCredentials | LongTermCredentials
