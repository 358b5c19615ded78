"""Stream listeners of the STUN and TURN servers: every TCP or TLS connection is admitted, or
refused, the moment it is accepted, and a TLS connection's handshake runs under a deadline.

``loop.create_server(ssl=...)`` runs a TLS handshake before the server's protocol exists, so a
server could count a connection only once its handshake was over: a peer that opened thousands of
connections and sent half a ClientHello on each cost about 300 KiB apiece (asyncio's 256 KiB read
buffer per TLS connection, and OpenSSL's state), bounded only by the process's file descriptors.
Here a :class:`StreamListener` accepts on its own (:class:`AcceptLoop`) and asks the server's
:class:`~stun.limits.StreamAdmission` about each connection before it has a transport: a refused
one is closed at once, having cost an accept. An admitted one is wrapped with
``loop.connect_accepted_socket``, under ``handshake_timeout`` for TLS, and counted as a pending
handshake until that ends. :class:`_Admitted` is the protocol asyncio sees: once connected it makes
the server's own protocol and hands it every event of the connection (data, EOF, write
backpressure, the close, which gives the connection's place back).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

from .address import Address
from .aio_sockets import _address, tcp_socket
from .limits import Closure, Refusal, StreamAdmission, source_key

_log = logging.getLogger("icestack.stun")

#: The listening socket's backlog.
_BACKLOG = 512
#: Connections accepted per readiness event, before other work gets a turn.
ACCEPTS_PER_EVENT = 64
#: How long a listener rests after accept() failed for want of resources (EMFILE, ENFILE,
#: ENOBUFS, ENOMEM): the connection stays in the backlog, so reading on would spin.
ACCEPT_RETRY_DELAY = 1.0
OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class AcceptLoop:
    """Accepts connections on a listening socket when it is readable (``loop.add_reader``), up to
    ``per_event`` at a time, handing each socket and address to ``on_accept``; ``after`` (if
    given) runs after each batch. When accept() fails for want of resources, ``on_failure`` is
    told and the loop rests :data:`ACCEPT_RETRY_DELAY`. The socket is the loop's to close."""

    def __init__(
        self,
        sock: socket.socket,
        on_accept: Callable[[socket.socket, Any], None],
        *,
        per_event: int = ACCEPTS_PER_EVENT,
        after: Callable[[], None] | None = None,
        on_failure: Callable[[OSError], None] | None = None,
    ) -> None:
        self.sock = sock
        self.on_accept = on_accept
        self.per_event = per_event
        self.after = after
        self.on_failure = on_failure
        self.loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self.per_event):
            try:
                conn, sockaddr = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break
            except OSError as exc:
                if self.on_failure is not None:
                    self.on_failure(exc)
                if exc.errno in OUT_OF_RESOURCES:
                    self._rest()
                break
            self.on_accept(conn, sockaddr)
        if self.after is not None:
            self.after()

    def _rest(self) -> None:
        self.loop.remove_reader(self.sock.fileno())

        def resume() -> None:
            if self.sock.fileno() != -1:
                self.loop.add_reader(self.sock.fileno(), self._accept)

        self.loop.call_later(ACCEPT_RETRY_DELAY, resume)

    def close(self) -> None:
        """Stop accepting and close the listening socket."""
        if self.sock.fileno() != -1:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class StreamListener:
    """One listening TCP (or, with ``ssl_context``, TLS) socket of a server, made by
    :func:`listen_stream`; every connection it accepts is admitted by ``admission``."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[Address], asyncio.Protocol],
        admission: StreamAdmission,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        #: The address it listens on.
        self.local = _address(sock.getsockname())
        self.protocol_factory = protocol_factory
        self.admission = admission
        self.ssl_context = ssl_context
        #: Connections being wrapped in a transport (their TLS handshake, for TLS).
        self.opening: set[_Admitted] = set()
        self.accepting = AcceptLoop(sock, self._accepted)

    def __str__(self) -> str:
        return f"{'tls' if self.ssl_context is not None else 'tcp'} {self.local}"

    def _accepted(self, conn: socket.socket, sockaddr: Any) -> None:
        peer = _address(sockaddr)
        source = source_key(peer.host)
        refusal = self.admission.admit(source, tls=self.ssl_context is not None)
        if refusal is not None:
            conn.close()
            self._log_refusal(refusal, peer)
            return
        connection = _Admitted(self, source)
        self.opening.add(connection)
        connection.opening = asyncio.get_running_loop().create_task(connection.open(conn))

    def _log_refusal(self, refusal: Refusal, peer: Address) -> None:
        """Log the first refusal of each reason (the admission counts every one)."""
        if self.admission.refused[refusal] == 1:
            _log.warning(
                "%s: refused a connection from %s: %s; later refusals for this reason are only "
                "counted",
                self,
                peer,
                refusal.value,
            )

    def close(self) -> None:
        """Stop listening and end every connection still being opened (connections already
        handed to the server's protocol are the server's to close)."""
        self.accepting.close()
        for connection in list(self.opening):
            if connection.opening is not None:
                connection.opening.cancel()

    async def wait_closed(self) -> None:
        """Wait until the connections :meth:`close` ended have let go of their places."""
        tasks = [c.opening for c in self.opening if c.opening is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


class _Admitted(asyncio.Protocol):
    """One admitted connection: holds its place in the admission until it is lost, and hands every
    event to the server's protocol (``inner``), made once the transport (and TLS) is up."""

    def __init__(self, listener: StreamListener, source: str) -> None:
        self.listener = listener
        self.source = source
        self.admitted = True
        self.handshaking = listener.ssl_context is not None
        self.inner: asyncio.Protocol | None = None
        self.opening: asyncio.Task[None] | None = None

    async def open(self, conn: socket.socket) -> None:
        """Wrap the accepted socket in a transport, TLS within ``handshake_timeout``; whatever
        fails (the peer's doing: a bad or silent ClientHello, a reset) closes it."""
        listener = self.listener
        limits = listener.admission.limits
        loop = asyncio.get_running_loop()
        started = loop.time()
        tls = listener.ssl_context
        try:
            if tls is None:
                await loop.connect_accepted_socket(lambda: self, conn)
            else:
                await loop.connect_accepted_socket(
                    lambda: self,
                    conn,
                    ssl=tls,
                    ssl_handshake_timeout=limits.handshake_timeout,
                    ssl_shutdown_timeout=limits.handshake_timeout,
                )
        except Exception:
            late = loop.time() - started >= limits.handshake_timeout
            closure = Closure.HANDSHAKE_TIMEOUT if late else Closure.HANDSHAKE_FAILED
            listener.admission.closed[closure] += 1
        finally:
            listener.opening.discard(self)
            if self.inner is None:  # failed, or cancelled as the listener closed
                conn.close()
                self._end_handshake()
                self._release()

    def _end_handshake(self) -> None:
        if self.handshaking:
            self.handshaking = False
            self.listener.admission.handshake_ended(self.source)

    def _release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.listener.admission.release(self.source)

    # ------------------------------------------------------------------ handed on

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._end_handshake()
        listener = self.listener
        self.inner = inner = listener.protocol_factory(listener.local)
        inner.connection_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        assert self.inner is not None
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        assert self.inner is not None
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        assert self.inner is not None
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        assert self.inner is not None
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self.inner is not None:
            self.inner.connection_lost(exc)


async def listen_stream(
    host: str,
    port: int,
    protocol_factory: Callable[[Address], asyncio.Protocol],
    *,
    admission: StreamAdmission,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> StreamListener:
    """Listen on TCP (TLS with ``ssl_context``) at ``(host, port)``; ``port=0`` picks one.

    Every accepted connection is admitted or refused by ``admission`` before anything is read
    (see the module docstring); ``protocol_factory(local)`` makes the protocol of each admitted
    one, ``local`` being the listening address, once its TLS handshake is over. IPv6 sockets are
    IPv6-only; ``reuse_port`` shares the port with other processes (``SO_REUSEPORT``).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = tcp_socket(family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return StreamListener(sock, protocol_factory, admission, ssl_context)
