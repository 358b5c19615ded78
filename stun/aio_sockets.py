"""asyncio building blocks of every client and server of the project: resolving names, opening
UDP and TCP sockets the way STUN and TURN want them, the batched UDP reader.

:class:`UdpReader` reads with ``loop.add_reader`` and drains the socket in batches (asyncio's own
datagram transport reads one datagram per loop iteration), so a server answers far more requests
per second; :func:`tcp_socket` turns Nagle's algorithm off on every stream. uvloop is used when
installed and asked for (:func:`install_uvloop`). :mod:`stun.aio_client` and
:mod:`stun.aio_server` build STUN's client and server from these (and from the stream listeners
of :mod:`stun.aio_streams`), :mod:`turn.aio` and :mod:`turn.server.aio` TURN's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from .address import Address
from .batch_io import DatagramIO, datagram_io, flush_pending, hold_flush
from .errors import LocalProtocolError
from .reader_errors import ReaderErrors

Transport = Literal["udp", "tcp", "tls"]

#: Default ports (RFC 8489 §18.7): 3478 for UDP and TCP, 5349 for TLS.
DEFAULT_PORTS: dict[str, int] = {"udp": 3478, "tcp": 3478, "tls": 5349}

_log = logging.getLogger("icestack.stun")

#: How many datagrams one wake-up of the UDP reader handles before yielding to the loop.
UDP_BATCH = 256


def install_uvloop() -> bool:
    """Use uvloop's event loop policy if uvloop is installed; return whether it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _address(sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> Address:
    return Address(sockaddr[0], sockaddr[1])


def tcp_socket(family: int) -> socket.socket:
    """A TCP socket with Nagle's algorithm off (TCP_NODELAY), for every stream we open or accept.

    STUN and TURN write small messages that must leave at once; under Nagle a write waits for
    the ACK of the one before, which the other side delays by up to 40 ms. The connections a
    listening socket accepts inherit the option (on Linux), and asyncio sets it again on them
    because the socket says IPPROTO_TCP (created with protocol 0, it would not).
    """
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


_AddrInfo = list[tuple[Any, Any, int, str, Any]]


async def _getaddrinfo(host: str, port: int, family: int, kind: int) -> _AddrInfo:
    """``socket.getaddrinfo`` in a daemon thread of its own.

    Not ``loop.getaddrinfo``: its executor thread is joined when the loop shuts down and again
    when the interpreter exits, so a lookup the caller gave up on (a ``connect_timeout`` against
    a resolver that never answers: the C library waits 5 s per try) would hold the process for
    as long as the C library insists. A daemon thread is abandoned with the wait.
    """
    loop = asyncio.get_running_loop()
    result: asyncio.Future[_AddrInfo] = loop.create_future()

    def settle(infos: _AddrInfo | None, error: BaseException | None) -> None:
        if result.done():  # the caller stopped waiting
            return
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(infos or [])

    def lookup() -> None:
        infos: _AddrInfo | None = None
        error: BaseException | None = None
        try:
            infos = socket.getaddrinfo(host, port, family, kind)
        except BaseException as exc:  # handed to the awaiting task, which raises it
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, infos, error)

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    return await result


async def resolve(host: str, port: int, family: int = 0, *, stream: bool = False) -> Address:
    """Resolve a host name (or IP literal) to one :class:`Address`, IPv4 or IPv6 per ``family``."""
    kind = socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
    try:
        infos = await _getaddrinfo(host, port, family, kind)
    except socket.gaierror as exc:
        raise LocalProtocolError(f"cannot resolve {host!r}: {exc.strerror}") from None
    if not infos:
        raise LocalProtocolError(f"{host!r} has no address of the requested family")
    return _address(infos[0][4])


def ipv6_loopback_available() -> bool:
    """Whether ``::1`` can be bound here (containers often run without IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class _Closing:
    """``async with`` support for anything with an ``async close()``."""

    __slots__ = ()  # so that a subclass with slots has no instance dict

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


@dataclass(frozen=True, slots=True)
class Listener:
    """One socket the server listens on."""

    transport: Transport
    address: Address

    def __str__(self) -> str:
        return f"{self.transport} {self.address}"


def bind_udp(
    host: str, port: int, *, reuse_port: bool = False, receive_buffer: int | None = 4 * 1024 * 1024
) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)``: IPv6 sockets are IPv6-only,
    ``reuse_port`` shares the port with other processes (``SO_REUSEPORT``), and
    ``receive_buffer`` asks the kernel for that much buffering (``None``: its default)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


#: ``handler(data, sockaddr, now)``: one datagram a :class:`UdpReader` read, and the loop time
#: of the batch it came in.
DatagramHandler = Callable[[bytes, tuple[Any, ...], float], None]


class UdpReader:
    """Reads a non-blocking UDP socket on readiness (``loop.add_reader``) in batches.

    Each wake-up drains up to :data:`UDP_BATCH` datagrams through ``io`` (:mod:`stun.batch_io`:
    ``recvmmsg`` on Linux unless ``batch`` is false), hands each to ``handler`` with one loop time
    for the whole batch, then calls ``after_batch`` (if given) once, then sends every answer that
    handlers queued with :meth:`send` (ICMP errors that Linux reports for earlier sends are
    skipped). What ``handler`` or ``after_batch`` raises is contained in ``errors``
    (:mod:`stun.reader_errors`) and the batch goes on. The socket belongs to the reader from then
    on: :meth:`close` closes it.
    """

    __slots__ = ("after_batch", "errors", "handler", "io", "local", "loop", "send", "sock")

    def __init__(
        self,
        sock: socket.socket,
        handler: DatagramHandler,
        after_batch: Callable[[], None] | None = None,
        *,
        errors: ReaderErrors | None = None,
        io: DatagramIO | None = None,
        batch: bool = True,
    ) -> None:
        self.sock = sock
        self.handler = handler
        self.after_batch = after_batch
        self.errors = errors if errors is not None else ReaderErrors()
        self.local = _address(sock.getsockname())
        self.io = io if io is not None else datagram_io(sock, batch=batch)
        #: ``send(data, sockaddr)``: an answer from this socket, queued until the batch ends
        #: (the portable path sends at once and may raise what ``sendto`` raises).
        self.send = self.io.send
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        handler = self.handler
        now = self.loop.time()
        try:
            datagrams = self.io.receive(UDP_BATCH)
        except OSError as exc:
            _log.warning("UDP socket %s: %s", self.local, exc)
            datagrams = []
        hold_flush()  # flushed below, after the batch
        try:
            for data, sockaddr in datagrams:
                try:
                    handler(data, sockaddr, now)
                except Exception as error:
                    self.errors.contain(error, f"UDP {self.local}")
            if self.after_batch is not None:
                try:
                    self.after_batch()
                except Exception as error:
                    self.errors.contain(error, f"UDP {self.local}")
        finally:
            try:
                flush_pending()
            except Exception as error:
                self.errors.contain(error, f"UDP {self.local}")

    def close(self) -> None:
        """Stop reading and close the socket (answers still queued are dropped)."""
        if self.sock.fileno() != -1:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


def check_listener_arguments(transport: str, ssl_context: ssl.SSLContext | None) -> None:
    """Refuse an unknown transport, a TLS listener without a context, and a context without TLS."""
    if transport not in DEFAULT_PORTS:
        raise LocalProtocolError(f"unknown transport {transport!r}: udp, tcp or tls")
    if (transport == "tls") != (ssl_context is not None):
        raise LocalProtocolError("a tls listener needs ssl_context; udp and tcp take none")
