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
