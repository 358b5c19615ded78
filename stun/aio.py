"""asyncio face of STUN: a client over UDP, TCP and TLS, and a server with listeners for each.

This layer owns sockets and the event loop's clock and nothing else (architecture.md §2): every
decision is made by the sans-IO :class:`~stun.client.ClientSession` and
:class:`~stun.server.BindingServer`. Its parts are :mod:`stun.aio_sockets` (resolving,
sockets, the batched :class:`UdpReader`: what TURN's asyncio layer uses too),
:mod:`stun.aio_streams` (the servers' stream listeners, which admit each connection as it is
accepted), :mod:`stun.aio_client` (:class:`StunClient`, :func:`binding`, :class:`ClientSocket`)
and :mod:`stun.aio_server` (:class:`StunServer`), and :mod:`stun.aio_discovery`
(:func:`discover_nat`, RFC 5780); every public name of theirs is importable from here.
"""

from .aio_client import SHARED_RTO_CACHE, ClientSocket, Receiver, StunClient, binding
from .aio_discovery import discover_nat
from .aio_server import StunServer
from .aio_sockets import (
    DEFAULT_PORTS,
    UDP_BATCH,
    DatagramHandler,
    Listener,
    Transport,
    UdpReader,
    bind_udp,
    check_listener_arguments,
    install_uvloop,
    ipv6_loopback_available,
    resolve,
    tcp_socket,
)
from .aio_sockets import _Closing as _Closing  # ``async with`` for the other asyncio layers
from .aio_streams import StreamListener, listen_stream

__all__ = [
    "DEFAULT_PORTS",
    "SHARED_RTO_CACHE",
    "UDP_BATCH",
    "ClientSocket",
    "DatagramHandler",
    "Listener",
    "Receiver",
    "StreamListener",
    "StunClient",
    "StunServer",
    "Transport",
    "UdpReader",
    "bind_udp",
    "binding",
    "check_listener_arguments",
    "discover_nat",
    "install_uvloop",
    "ipv6_loopback_available",
    "listen_stream",
    "resolve",
    "tcp_socket",
]
