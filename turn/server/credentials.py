"""The server's side of the "TURN REST API" credentials (:mod:`turn.rest_api`).

The server derives each such user's long-term keys (RFC 8489 §9.2.2) from the password on demand
(:class:`RestApiUsers`, a mapping that :class:`stun.authentication.LongTermAuthenticator` reads
like any users table), and refuses a username whose expiry has passed (:func:`rest_api_expiry`).
The expiry is wall-clock time, which the sans-IO core does not read: the TURN server is told how
far its ``now`` is from Unix time (``TurnServerCore.wall_clock_offset``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping

from stun import LocalProtocolError, PasswordAlgorithmId
from stun.authentication import LongTermKey

from ..rest_api import rest_api_expiry, rest_api_password


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
