"""Stateless nonces for the long-term credential mechanism (RFC 8489 §9.2, §9.2.4; RFC 7616 §5.4).

A server hands a client a NONCE in every 401 and 438 and later checks the nonce the client echoes.
Keeping a table of issued nonces would let a flood of spoofed requests grow it without bound, so a
nonce here carries its own proof instead::

    "obMatJos2" + features (4 base64 chars)              the nonce cookie (§9.2)
    + base64url(issued_ms (6 bytes) + mac (12 bytes))    24 characters

where ``mac`` is HMAC-SHA256 over the features, the issue time and the client's transport address,
keyed with a server secret and truncated to 96 bits. Checking a nonce recomputes the MAC: a nonce
the server did not issue, issued to another address, or whose cookie was edited (the bid-down attack
of §9.2.1) is *invalid*; one older than the lifetime is *stale*. Binding the address honours §9.2.4:
the server "MUST NOT choose the same NONCE for two requests unless they have the same source IP
address and port". Nonces are 37 printable ASCII characters, well under the 128 that §14.10 allows
and free of quotes and backslashes.

Servers that share a secret (and a clock) accept each other's nonces (architecture.md §6).
"""

from __future__ import annotations

import base64
import enum
import struct

from .address import Address
from .errors import LocalProtocolError
from .integrity import (
    NONCE_COOKIE,
    SecurityFeatures,
    constant_time_equal,
    hmac_sha256,
    nonce_features,
    nonce_with_features,
)
from .randomness import RandomSource, default_random, random_bytes

#: How long a nonce stays valid by default, in seconds: ten minutes, as TURN servers
#: conventionally use. A client whose nonce expires gets 438 and retries at once (§9.2.5).
DEFAULT_NONCE_LIFETIME = 600.0
#: The longest lifetime accepted: nonces bound replay only if they expire (RFC 7616 §5.4).
MAX_NONCE_LIFETIME = 3600.0
#: The shortest secret accepted, in bytes.
MIN_SECRET_SIZE = 16

_MAC_SIZE = 12
_TIME_SIZE = 6
_MAX_MILLISECONDS = 1 << (8 * _TIME_SIZE)
_PREFIX_LENGTH = len(NONCE_COOKIE) + 4
_BODY_LENGTH = (_TIME_SIZE + _MAC_SIZE) * 4 // 3
NONCE_LENGTH = _PREFIX_LENGTH + _BODY_LENGTH
_FEATURES = struct.Struct("!I")
#: Genuine nonces remembered with their issue times, per client, before the cache is emptied
#: (a client can make the server issue any number of nonces, so it is bounded).
VERIFIED_CACHE_SIZE = 4096


class NonceStatus(enum.Enum):
    """What :meth:`NonceIssuer.check` found."""

    VALID = "valid"
    #: Ours and unmodified, but past its lifetime (or dated in the future).
    STALE = "stale"
    #: Not a nonce this issuer made for this client: forged, garbled, edited or another address's.
    INVALID = "invalid"


def check_nonce_settings(secret: bytes | None, lifetime: float) -> None:
    """Raise :class:`LocalProtocolError` unless a secret and lifetime make sound nonces."""
    if secret is not None and len(secret) < MIN_SECRET_SIZE:
        raise LocalProtocolError(f"nonce secret must be at least {MIN_SECRET_SIZE} bytes")
    if not 0 < lifetime <= MAX_NONCE_LIFETIME:
        raise LocalProtocolError(
            f"nonce lifetime must be in (0, {MAX_NONCE_LIFETIME:g}] seconds, not {lifetime}"
        )


class NonceIssuer:
    """Issues and checks stateless nonces bound to a client address and an issue time.

    ``features`` go into the nonce cookie of every nonce (set
    :attr:`SecurityFeatures.PASSWORD_ALGORITHMS` when the server sends PASSWORD-ALGORITHMS, §9.2.4).
    ``secret`` keys the MAC; when omitted it is drawn from ``rng``, so nonces die with the process.
    """

    __slots__ = ("_cookie", "_features", "_secret", "_verified", "features", "lifetime")

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        lifetime: float = DEFAULT_NONCE_LIFETIME,
        features: SecurityFeatures = SecurityFeatures.NONE,
        rng: RandomSource | None = None,
    ) -> None:
        check_nonce_settings(secret, lifetime)
        if secret is None:
            secret = random_bytes(rng or default_random(), 32)
        self._secret = secret
        self.lifetime = lifetime
        self.features = features
        self._features = _FEATURES.pack(int(features))[1:]
        self._cookie = nonce_with_features(features, "")
        self._verified: dict[tuple[str, Address], int] = {}

    def issue(self, client: Address, now: float) -> str:
        """A fresh nonce for ``client`` at time ``now`` (seconds, the caller's clock)."""
        issued = int(now * 1000)
        if not 0 <= issued < _MAX_MILLISECONDS:
            raise LocalProtocolError(f"now out of range for a nonce timestamp: {now}")
        stamp = issued.to_bytes(_TIME_SIZE, "big")
        mac = self._mac(self._features, stamp, client)
        return self._cookie + base64.urlsafe_b64encode(stamp + mac).decode("ascii")

    def check(self, nonce: str, client: Address, now: float) -> NonceStatus:
        """Whether ``nonce`` is one this issuer gave ``client`` and is still fresh at ``now``.

        The MAC comparison is constant-time. The features are read from the nonce's own cookie
        and covered by the MAC, so an edited cookie makes the nonce invalid. A nonce found
        genuine is remembered with its issue time (at most :data:`VERIFIED_CACHE_SIZE`), so that
        a client's every request with it costs a look-up, not a MAC.
        """
        issued = self._verified.get((nonce, client))
        if issued is None:
            issued = self._issue_time(nonce, client)
            if issued is None:
                return NonceStatus.INVALID
            verified = self._verified
            if len(verified) >= VERIFIED_CACHE_SIZE:
                verified.clear()
            verified[nonce, client] = issued
        age = now * 1000 - issued
        if not 0 <= age < self.lifetime * 1000:
            return NonceStatus.STALE
        return NonceStatus.VALID

    def _issue_time(self, nonce: str, client: Address) -> int | None:
        """When ``nonce`` was issued (Unix ms of the caller's clock), if this issuer made it for
        ``client``; ``None`` if not."""
        if len(nonce) != NONCE_LENGTH:
            return None
        features = nonce_features(nonce)
        if features is None or nonce_with_features(features, "") != nonce[:_PREFIX_LENGTH]:
            return None
        body = nonce[_PREFIX_LENGTH:]
        try:
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if base64.urlsafe_b64encode(raw) != body.encode("ascii"):
            return None  # a non-canonical spelling of some other nonce
        stamp, claimed = raw[:_TIME_SIZE], raw[_TIME_SIZE:]
        expected = self._mac(_FEATURES.pack(int(features))[1:], stamp, client)
        if not constant_time_equal(expected, claimed):
            return None
        return int.from_bytes(stamp, "big")

    def _mac(self, features: bytes, stamp: bytes, client: Address) -> bytes:
        material = features + stamp + f"{client.host} {client.port}".encode()
        return hmac_sha256(self._secret, material)[:_MAC_SIZE]
