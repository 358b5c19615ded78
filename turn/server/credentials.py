"""Time-limited TURN credentials from a shared secret: the "TURN REST API" scheme.

Many servers that share nothing but a secret can all accept the same credentials
(architecture.md §6), minted by a web service that knows the secret
(draft-uberti-behave-turn-rest; coturn's ``--static-auth-secret``)::

    username = "<expiry>:<user>"                    expiry in Unix seconds; ":<user>" optional
    password = base64(HMAC-SHA1(secret, username))

The server derives each such user's long-term keys (RFC 8489 §9.2.2) from the password on demand
(:class:`RestApiUsers`, a mapping that :class:`stun.authentication.LongTermAuthenticator` reads
like any users table), and refuses a username whose expiry has passed (:func:`rest_api_expiry`).
The expiry is wall-clock time, which the sans-IO core does not read: the TURN server is told how
far its ``now`` is from Unix time (``TurnServerCore.wall_clock_offset``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Iterator, Mapping

from stun import LocalProtocolError, PasswordAlgorithmId
from stun.authentication import LongTermKey

#: The longest expiry field accepted: Unix seconds have 10 digits until the year 2286.
_MAX_EXPIRY_DIGITS = 12


def rest_api_password(secret: bytes, username: str) -> str:
    """The password of a REST API ``username``: base64 of HMAC-SHA1 keyed with ``secret``."""
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_api_username(user: str, expires_at: float) -> str:
    """The username that names ``user`` until ``expires_at`` (Unix seconds)."""
    expiry = int(expires_at)
    if expiry < 0:
        raise LocalProtocolError(f"expiry before 1970: {expires_at}")
    return f"{expiry}:{user}" if user else str(expiry)


def rest_api_expiry(username: str) -> int | None:
    """The expiry (Unix seconds) a REST API username names, or ``None`` if it is not one."""
    expiry = username.partition(":")[0]
    if not 0 < len(expiry) <= _MAX_EXPIRY_DIGITS or not (expiry.isascii() and expiry.isdigit()):
        return None
    return int(expiry)


@functools.lru_cache(maxsize=4096)
def _rest_api_key(
    secret: bytes, realm: str, username: str, algorithms: tuple[PasswordAlgorithmId, ...]
) -> LongTermKey:
    password = rest_api_password(secret, username)
    return LongTermKey.from_password(username, realm, password, algorithms)


class RestApiUsers(Mapping[str, LongTermKey]):
    """Every REST API username's long-term keys, computed from the secret when asked for.

    ``static`` users (from a users file) are looked up first. Iterating yields only them: the REST
    API users are every string of the right form, so they cannot be listed (nor, therefore, be
    found by USERHASH, RFC 8489 §14.4). Whether a username has expired is not this mapping's
    business: it has no clock.
    """

    __slots__ = ("_algorithms", "_realm", "_secret", "_static")

    def __init__(
        self,
        secret: bytes,
        realm: str,
        static: Mapping[str, LongTermKey] | None = None,
        algorithms: tuple[PasswordAlgorithmId, ...] = tuple(PasswordAlgorithmId),
    ) -> None:
        if not secret:
            raise LocalProtocolError("the REST API shared secret must not be empty")
        self._secret = secret
        self._realm = realm
        self._static: Mapping[str, LongTermKey] = static or {}
        self._algorithms = algorithms

    def is_static(self, username: str) -> bool:
        """Whether ``username`` is one of the static users (which never expire)."""
        return username in self._static

    def __getitem__(self, username: str) -> LongTermKey:
        key = self._static.get(username)
        if key is not None:
            return key
        if rest_api_expiry(username) is None:
            raise KeyError(username)
        return _rest_api_key(self._secret, self._realm, username, self._algorithms)

    def __iter__(self) -> Iterator[str]:
        return iter(self._static)

    def __len__(self) -> int:
        return len(self._static)
