"""What went wrong, in words a person reads, and what to do about it.

A probe or a client fails with an exception whose class name (``ConnectionResetError``,
``TransactionTimeout``) tells a user little. :func:`explain` turns the errors a STUN client meets
— an error response (RFC 8489 §6.3.4), a transaction timeout (§6.2), a refused, reset or closed
connection, a connection or handshake that ran out of time, a network this host has no route
to, a TLS certificate that is not trusted — into an :class:`Explanation`: what happened, and the
hint a person needs to fix it. The CLI prints both; the ``--json`` report carries both.
"""

from __future__ import annotations

import errno
import ssl
from dataclasses import dataclass

from .attributes import Realm
from .errors import (
    ConnectStep,
    ConnectTimeout,
    DecodeError,
    ErrorResponse,
    IntegrityError,
    ServerUnreachable,
    StunError,
    TransactionTimeout,
)


@dataclass(frozen=True, slots=True)
class Explanation:
    """``what`` happened, in words, and a ``hint`` on what to do (``None`` when there is none)."""

    what: str
    hint: str | None = None

    def __str__(self) -> str:
        return self.what if self.hint is None else f"{self.what}; {self.hint}"


def explain(
    error: BaseException, *, target: str, transport: str, with_credentials: bool = False
) -> Explanation:
    """Describe ``error``, met while talking to ``target`` (``host:port``) over ``transport``
    (``udp``, ``tcp`` or ``tls``); ``with_credentials`` says whether the user gave a username
    and password, which changes what a 401 means."""
    if isinstance(error, ErrorResponse):
        return _error_response(error, with_credentials)
    if isinstance(error, ConnectTimeout):
        return Explanation(str(error), _CONNECT_HINTS[error.step])
    if isinstance(error, ServerUnreachable):
        return Explanation(
            str(error),
            "this host has no route there: check its network connection (ip route), or try "
            "the other address family (-4 or -6)",
        )
    if isinstance(error, TransactionTimeout):
        return _timeout(error, target, transport)
    if isinstance(error, IntegrityError):
        return Explanation(
            f"the answers from {target} failed their integrity check",
            "the password is wrong (check --password), or something in between alters messages",
        )
    if isinstance(error, DecodeError):
        return Explanation(
            f"{target} answered with something that is not usable STUN: {error}",
            "check that this is the STUN port of the server",
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return Explanation(
            f"the TLS certificate of {target} is not trusted: {error.verify_message}",
            "pass --cafile with the certificate (or CA) that signed it, or --insecure to skip "
            "the check (diagnostics only)",
        )
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "reason", None) or error
        return Explanation(
            f"the TLS handshake with {target} failed: {reason}",
            "check that this port speaks TLS (STUN over TLS is usually port 5349)",
        )
    if isinstance(error, TimeoutError):
        return Explanation(
            f"no answer to the {transport.upper()} connection attempt to {target}",
            "a firewall may drop it; check the address and port",
        )
    if isinstance(error, OSError):
        return _os_error(error, target, transport)
    if isinstance(error, StunError):
        return Explanation(str(error))
    return Explanation(f"{type(error).__name__}: {error}")


#: What to check when connecting ran out of time in each step.
_CONNECT_HINTS = {
    ConnectStep.RESOLVING: "check the name, and that this host can reach its DNS servers",
    ConnectStep.TCP: "a firewall may drop it; check the address and port",
    ConnectStep.TLS: "check that this port speaks TLS (STUN over TLS is usually port 5349)",
}


def answered(error: ErrorResponse) -> str:
    """An error response in words: ``the server answered 401 Unauthorized`` (without the NUL
    bytes coturn pads some reason phrases with)."""
    reason = error.reason.strip(" \x00")
    return f"the server answered {error.code} {reason}".rstrip()


def _error_response(error: ErrorResponse, with_credentials: bool) -> Explanation:
    code = error.code
    what = answered(error)
    if code == 401:
        realm = error.response.get(Realm) if error.response is not None else None
        in_realm = f" of realm {realm.value!r}" if realm is not None else ""
        if with_credentials:
            return Explanation(
                what,
                f"it refused the username and password: check --user, --password and "
                f"that they are credentials{in_realm}",
            )
        return Explanation(
            what, f"it wants long-term credentials{in_realm}: pass --user and --password"
        )
    hints = {
        300: "it redirects every request elsewhere (ALTERNATE-SERVER)",
        400: "it found the request malformed; a server bug, or a proxy altering messages",
        420: "it requires an attribute this client does not know",
        438: "it kept refusing the nonce; check the server's clock and nonce settings",
    }
    hint = hints.get(code)
    if hint is None and 500 <= code < 600:
        hint = "the server has a problem of its own; try again later"
    return Explanation(what, hint)


def _timeout(error: TransactionTimeout, target: str, transport: str) -> Explanation:
    if transport == "udp":
        return Explanation(
            f"{error}",
            "nothing answers STUN there: check the host and port (3478 by default) and that no "
            "firewall drops UDP",
        )
    if "closed" in str(error):
        return Explanation(
            f"{target} closed the {transport.upper()} connection without answering",
            "it may not speak STUN on this port"
            + (", or it expects TLS (--tls)" if transport == "tcp" else ""),
        )
    return Explanation(
        f"{error}",
        f"the server accepted the {transport.upper()} connection "
        "but never answered: it may not speak STUN on this port",
    )


def _os_error(error: OSError, target: str, transport: str) -> Explanation:
    kind = transport.upper()
    if error.errno == errno.ECONNREFUSED:
        return Explanation(
            f"{target} refused the {kind} connection: nothing listens on that port",
            "check the port, and that the server runs with TCP"
            + (" and TLS" if transport == "tls" else "")
            + " enabled",
        )
    if error.errno in (errno.ECONNRESET, errno.EPIPE):
        return Explanation(
            f"{target} reset the {kind} connection",
            "it may not speak STUN on this port"
            + (", or it expects TLS (--tls)" if transport == "tcp" else ""),
        )
    if error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN):
        return Explanation(
            f"no route to {target}",
            "check the network connection, or try the other address family (-4 or -6)",
        )
    return Explanation(f"{kind} to {target}: {error.strerror or error}")
