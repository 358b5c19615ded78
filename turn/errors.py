"""The exceptions of the :mod:`turn` package.

Everything raised on purpose by this package derives from :class:`TurnError`, split like
:mod:`stun.errors`: :class:`LocalProtocolError` means the caller used the API wrongly,
:class:`RemoteProtocolError` means the peer sent something we cannot accept.

TURN attributes live in :mod:`stun`'s codec registry, so their parsers keep that registry's
contract and raise :class:`stun.DecodeError`; :class:`DecodeError` here is for TURN's own wire
format, the ChannelData message (RFC 8656 §12.4).
"""

from __future__ import annotations


class TurnError(Exception):
    """Root of every exception this package raises on purpose."""


class LocalProtocolError(TurnError):
    """The API was misused: a channel number out of range, data too long, a call out of order."""


class RemoteProtocolError(TurnError):
    """The peer sent input that cannot be accepted."""


class DecodeError(RemoteProtocolError):
    """Bytes that are not a well-formed ChannelData message (RFC 8656 §12.4), or text that is not
    a usable TURN or STUN URI (RFC 7065, RFC 7064; :func:`turn.parse_uri`).

    The message says what is wrong, e.g. ``"ChannelData: channel 0x5000 outside 0x4000-0x4FFF"``.
    """


class PeerNotPermitted(TurnError):
    """The TURN server holds no permission for a peer's IP address (RFC 8656 §9), so it drops
    what is sent to it: it refused the permission (403 when its peer policy refuses the address),
    or never answered. Raised by :meth:`turn.TurnClient.send` to that peer until a permission is
    granted (:meth:`turn.TurnClient.create_permission` asks again). ``host`` is the peer's IP
    address, ``error`` what the request for the permission ended with."""

    def __init__(self, host: str, server: object, error: Exception) -> None:
        code = getattr(error, "code", None)
        if code == 403:
            why = (
                f"the server refused it ({error}): its peer policy does not relay to this "
                "address (an icestack server relays to loopback peers with "
                "--allow-loopback-peers, to other refused ranges with --allowed-peer-ip)"
            )
        else:
            why = f"the request for it failed: {error}"
        super().__init__(f"no permission for peer {host} on TURN server {server}: {why}")
        self.host = host
        self.error = error


#: What an error response to a Connect or ConnectionBind means (RFC 6062 §4.3, §4.4, §5.2).
_CONNECTION_FAILURES = {
    400: "the server found the request malformed, or (ConnectionBind) holds no such peer "
    "connection any more: it closes one that no data connection binds within 30 s",
    403: "the server refused the peer: it holds no permission for the peer's IP address, or its "
    "peer policy does not relay there (an icestack server relays to loopback peers with "
    "--allow-loopback-peers, to other refused ranges with --allowed-peer-ip)",
    437: "the server holds no allocation for this client (it expired, or the server restarted)",
    441: "the server refused the credentials of the data connection",
    443: "the peer's address family differs from the relayed address's",
    446: "a connection to this peer address exists on the allocation already, or is being made: "
    "one at a time per peer address (RFC 6062 §5.2)",
    447: "the server could not connect to the peer: it refused the connection, or did not "
    "answer within the server's timeout (30 s by RFC 6062 §5.2)",
    508: "the allocation has as many peer connections as the server allows",
}


class PeerConnectionFailed(TurnError):
    """A TCP connection to or from a peer through a TCP allocation (RFC 6062) could not be
    made: the server refused or failed the Connect (``step`` ``"Connect"``), or the data
    connection's ``"ConnectionBind"``. The message says why in words; ``peer`` is the peer,
    ``error`` what the request ended with, ``code`` its error code if it was an error
    response."""

    def __init__(self, peer: object, server: object, step: str, error: Exception) -> None:
        code = getattr(error, "code", None)
        reason = str(getattr(error, "reason", "")).strip(" \x00")  # coturn pads with NULs
        said = f"{code} {reason}".strip() if isinstance(code, int) else str(error)
        why = _CONNECTION_FAILURES.get(code) if isinstance(code, int) else None
        detail = f"{said}: {why}" if why is not None else said
        super().__init__(f"{step} for peer {peer} on TURN server {server} failed: {detail}")
        self.peer = peer
        self.step = step
        self.error = error
        self.code: int | None = code if isinstance(code, int) else None
