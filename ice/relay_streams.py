"""asyncio layer: the TCP and TLS connections of a :class:`~ice.aio.Connection` to its TURN servers
(RFC 8656 §3.1; ``turn:…?transport=tcp`` and ``turns:`` URIs, RFC 7065).

Theory of operation. The agent asks for a connection with :class:`~ice.relay.OpenRelayStream` and
labels everything its allocation sends there with the stream's label (:mod:`ice.relay`).
:class:`RelayStreams` carries that out: it connects from the base's interface address (TLS
verified by the connection's context for the server's name), writes each datagram as it is — a
STUN message delimits itself and the allocation pads ChannelData to four bytes (RFC 8656 §12.5) —
and cuts what arrives into STUN and ChannelData frames (:class:`~stun.framing.StreamDecoder`),
handing each to the connection as a datagram that came on the label from the server. It tells
the agent when a connection is established and when it could not be opened or ended, with the
reason in words (:func:`stun.explain.explain`); it never retries by itself — the agent decides
(a restart allocates again, over a new connection).

Bounded. While a connection is being opened, at most :data:`MAX_WAITING` datagrams wait for it.
Once open, a slow path or server shows as a growing write buffer: past ``write_buffer_limit``
bytes, relayed data (ChannelData, Send indications) is dropped, as a full UDP socket drops it,
while the allocation's own requests (Refresh, CreatePermission, ChannelBind: few, and their loss
would end the allocation) are still written. Every drop is counted in :attr:`RelayStreams.dropped`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import TYPE_CHECKING

from stun.address import Address
from stun.datagram import Datagram
from stun.errors import DecodeError
from stun.explain import explain
from stun.framing import Framing, StreamDecoder
from stun.tls import client_context

from .errors import LocalProtocolError
from .relay import CloseRelayStream, OpenRelayStream, RelayStreamCommand

if TYPE_CHECKING:
    from .aio import Connection

_log = logging.getLogger("icestack.ice")

#: Datagrams held for a connection that is being opened (an Allocate, its retry after the 401,
#: a few checks); more are dropped and counted.
MAX_WAITING = 64
#: Bytes waiting to be written to a TURN server past which relayed data is dropped (counted).
WRITE_BUFFER_LIMIT = 256 * 1024


class TlsSettings:
    """How a connection checks its TURN servers' certificates: against the system CAs, or
    ``cafile``'s; ``verify=False`` checks nothing (the explicit opt-out, logged when used). A
    ``cafile`` is loaded at once, so that a bad one is refused where it is given."""

    __slots__ = ("_cafile", "_context", "verify")

    def __init__(self, cafile: str | os.PathLike[str] | None, verify: bool) -> None:
        if cafile is not None and not isinstance(cafile, str | os.PathLike):
            raise LocalProtocolError(f"turn_tls_cafile must be a path, not {cafile!r}")
        self.verify = verify
        self._context: ssl.SSLContext | None = None
        self._cafile = cafile
        if cafile is not None:
            try:
                self._context = client_context(os.fspath(cafile), verify=verify)
            except (OSError, ssl.SSLError) as exc:
                why = getattr(exc, "strerror", None) or exc
                raise LocalProtocolError(f"turn_tls_cafile {os.fspath(cafile)!r}: {why}") from None

    def context(self) -> ssl.SSLContext:
        """The client context, made when first needed (loading the system CAs costs time)."""
        if self._context is None:
            self._context = client_context(verify=self.verify)
            if not self.verify:
                _log.warning(
                    "TURN over TLS without certificate verification (turn_tls_verify=False): "
                    "anyone on the path can pose as the TURN server"
                )
        return self._context


#: The settings of every connection that checks against the system CAs: one object, so that
#: the context is loaded once for all of them, and no settings object is made per connection.
_SYSTEM_CAS = TlsSettings(None, verify=True)


def tls_settings(cafile: str | os.PathLike[str] | None, verify: bool) -> TlsSettings:
    """The :class:`TlsSettings` for ``cafile`` and ``verify``: the shared one for the default."""
    if cafile is None and verify is True:
        return _SYSTEM_CAS
    return TlsSettings(cafile, verify)


def is_relayed_data(data: bytes) -> bool:
    """Whether a datagram to a TURN server carries a peer's data — ChannelData (first byte
    0x40-0x7F, RFC 8656 §12.4) or a STUN indication (a Send, §10.1) — rather than a request."""
    if not data:
        return False
    first = data[0]
    if first >= 0x40:
        return True
    return len(data) > 1 and (data[1] & 0x10) != 0 and (data[0] & 0x01) == 0


class _Stream(asyncio.Protocol):
    """One connection to a TURN server, opened for a label."""

    def __init__(self, owner: RelayStreams, command: OpenRelayStream) -> None:
        self.owner = owner
        self.label = command.label
        self.server = command.server
        self.tls = command.tls
        self.decoder = StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
        self.transport: asyncio.Transport | None = None
        self.waiting: list[bytes] = []
        #: Written in this iteration of the event loop after its first write, sent together at
        #: its end: a datagram alone goes out at once, a burst in two writes (one TLS record and
        #: one system call for the rest of it, not one each).
        self.corked: list[bytes] = []
        self.corked_size = 0
        self.in_burst = False
        self.opening: asyncio.Task[None] | None = None
        #: Closed at the agent's request: nothing more is reported.
        self.detached = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except DecodeError as exc:
            self.owner.ended(self, f"the server sent what is not STUN or ChannelData: {exc}")
            return
        if frames and not self.detached:
            self.owner.received(self, frames)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "the server closed the connection" if exc is None else f"connection lost: {exc}"
        self.owner.ended(self, reason)

    @property
    def buffered(self) -> int:
        waiting = sum(map(len, self.waiting)) + self.corked_size
        transport = self.transport
        if transport is None or transport.is_closing():
            return waiting
        return waiting + transport.get_write_buffer_size()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.opening is not None:
            if len(self.waiting) < MAX_WAITING:
                self.waiting.append(data)
            else:
                self.owner.dropped += 1
            return
        size = transport.get_write_buffer_size() + self.corked_size
        if size >= self.owner.write_buffer_limit and is_relayed_data(data):
            self.owner.dropped += 1
            return
        if not self.in_burst:
            self.in_burst = True
            asyncio.get_running_loop().call_soon(self.flush)
            transport.write(data)
            return
        self.corked.append(data)
        self.corked_size += len(data)

    def flush(self) -> None:
        """Send what was written in this iteration of the loop after its first write, at once."""
        self.in_burst = False
        corked, self.corked, self.corked_size = self.corked, [], 0
        transport = self.transport
        if corked and transport is not None and not transport.is_closing():
            transport.write(b"".join(corked))

    def close(self) -> None:
        self.detached = True
        if self.opening is not None:
            self.opening.cancel()
        self.flush()  # a deallocation written last still goes out before the close
        if self.transport is not None:
            self.transport.close()


class RelayStreams:
    """The TCP/TLS connections of one ICE connection's relays, by label (module docstring)."""

    __slots__ = ("_connection", "_streams", "_tls", "dropped", "write_buffer_limit")

    def __init__(
        self,
        connection: Connection,
        tls: TlsSettings,
        write_buffer_limit: int = WRITE_BUFFER_LIMIT,
    ) -> None:
        self._connection = connection
        self._tls = tls
        self.write_buffer_limit = write_buffer_limit
        #: The connections by label, made with the first (most ICE connections have none).
        self._streams: dict[Address, _Stream] | None = None
        #: Datagrams not written: too many waiting for a connection, or its write buffer full.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._streams or ())

    @property
    def buffered(self) -> int:
        """Bytes written and not yet sent, over every connection (waiting ones included)."""
        return sum(stream.buffered for stream in (self._streams or {}).values())

    def apply(self, commands: list[RelayStreamCommand]) -> None:
        """Carry out the agent's commands, in order."""
        for command in commands:
            stream = self._streams.pop(command.label, None) if self._streams else None
            if stream is not None:
                stream.close()
            if isinstance(command, OpenRelayStream):
                self._open(command)
            else:
                assert isinstance(command, CloseRelayStream)

    def _open(self, command: OpenRelayStream) -> None:
        stream = _Stream(self, command)
        if self._streams is None:
            self._streams = {}
        self._streams[command.label] = stream
        stream.opening = asyncio.ensure_future(self._connect(stream, command))

    async def _connect(self, stream: _Stream, command: OpenRelayStream) -> None:
        loop = asyncio.get_running_loop()
        server = command.server
        try:
            await loop.create_connection(
                lambda: stream,
                server.host,
                server.port,
                ssl=self._tls.context() if command.tls else None,
                server_hostname=command.server_name if command.tls else None,
                local_addr=(command.local_host, 0),
            )
        except (OSError, ssl.SSLError) as exc:
            transport = "tls" if command.tls else "tcp"
            why = explain(exc, target=str(server), transport=transport).what
            stream.opening = None
            self.ended(stream, why)
            return
        stream.opening = None
        if stream.detached:
            return
        waiting, stream.waiting = stream.waiting, []
        for data in waiting:
            stream.write(data)
        connection = self._connection
        agent = connection._agent
        if agent is not None:
            agent.relay_stream_connected(stream.label, connection._loop.time())
            connection._pump()

    def send(self, datagram: Datagram) -> bool:
        """Write ``datagram`` on the connection of its label; ``False`` if it names none."""
        streams, label = self._streams, datagram.local
        stream = streams.get(label) if streams is not None and label is not None else None
        if stream is None:
            return False
        if datagram.remote == stream.server:
            stream.write(datagram.data)
        return True

    def ended(self, stream: _Stream, reason: str) -> None:
        """A connection could not be opened or ended: tell the agent, unless it asked for it."""
        if stream.detached:
            return
        stream.close()
        streams = self._streams
        if streams is not None and streams.get(stream.label) is stream:
            del streams[stream.label]
        connection = self._connection
        agent = connection._agent
        if agent is not None:
            agent.relay_stream_closed(stream.label, connection._loop.time(), reason)
            connection._pump()

    def received(self, stream: _Stream, frames: list[bytes]) -> None:
        """Frames from a TURN server: datagrams to the agent, as if they came to a socket."""
        connection = self._connection
        agent = connection._agent
        if agent is None:
            return
        now = connection._loop.time()
        where = f"the TURN connection to {stream.server}"
        for frame in frames:
            try:
                agent.receive_datagram(frame, stream.label, stream.server, now)
            except Exception as error:  # a bug: contained, as the UDP readers contain theirs
                connection.reader_errors.contain(error, where)
        try:
            connection._pump(timer_later=True)
        except Exception as error:
            connection.reader_errors.contain(error, where)

    def close(self) -> None:
        """Close every connection (what was written is still sent); nothing more is reported."""
        streams, self._streams = self._streams or {}, None
        for stream in streams.values():
            stream.close()
