"""Time-limited TURN credentials from a shared secret: the "TURN REST API" scheme.

Many servers that share nothing but a secret can all accept the same credentials
(architecture.md §6), minted by a web service that knows the secret
(draft-uberti-behave-turn-rest; coturn's ``--static-auth-secret``)::

    username = "<expiry>:<user>"                    expiry in Unix seconds; ":<user>" optional
    password = base64(HMAC-SHA1(secret, username))

Clients mint them (``ice.Connection``'s TURN options, ``icestack probe``); the server checks them
(:mod:`turn.server.credentials`). This module is what both share, so that a client need not
import the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from stun import LocalProtocolError

__all__ = ["rest_api_expiry", "rest_api_password", "rest_api_username"]

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
