"""How a TURN client reaches its server: the transport of the 5-tuple (RFC 8656 §3.1), shared by
the client, the server and ICE's relayed candidates — kept apart so that the client side need not
import the server."""

from __future__ import annotations

import enum

__all__ = ["ClientTransport"]


class ClientTransport(enum.Enum):
    """How the client reaches the server: the transport of the 5-tuple (RFC 8656 §3.1)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    #: Members are singletons compared by identity: hashed by identity too, in C, rather than by
    #: ``Enum.__hash__`` in Python (a 5-tuple is a key the relay path looks up per datagram).
    __hash__ = object.__hash__

    @property
    def is_stream(self) -> bool:
        """Whether ChannelData to the client is padded to four bytes (RFC 8656 §12.5)."""
        return self is not ClientTransport.UDP
