"""asyncio face of the TURN server: listeners for clients, one UDP socket per relayed address.

This layer owns sockets and the event loop's clock and nothing else (architecture.md §2): every
decision is made by the sans-IO :class:`~turn.server.TurnServerCore`. What it adds:

* **Client listeners** over UDP, TCP and TLS. UDP is read in batches on readiness
  (:class:`stun.aio.UdpReader`) and answered inline (:mod:`turn.server.aio_udp`); a stream is
  cut into STUN and ChannelData messages by :class:`stun.StreamDecoder` with
  :attr:`~stun.framing.Framing.STUN_OR_CHANNEL_DATA` (RFC 8656 §12.5;
  :attr:`~stun.framing.Framing.STUN_OR_RFC5766_CHANNEL_DATA` when the server accepts RFC 5766's
  channel numbers), and a stream that cannot be framed is closed. When a TCP or TLS connection
  closes, its allocation goes with it (:meth:`TurnServerCore.connection_closed`).
* **Relayed addresses** (:class:`~turn.server.aio_udp.UdpRelays`, the core's
  :class:`~turn.server.RelayAllocator`): one UDP socket each, bound on the relay IP address of
  its family at a port drawn from a range (from a random point: relayed ports should not be
  predictable, RFC 8656 §7.2), read in batches the same way. What a peer sends goes through the
  core and out to the client on the listener or connection of the allocation's 5-tuple.
* **Time**: one ``loop.call_at`` at :meth:`TurnServerCore.get_timer`, re-armed after every batch;
  the core's ``wall_clock_offset`` (Unix time minus loop time, for REST API usernames) set at
  start and corrected at every timer. An exception of the core there is contained
  (:mod:`stun.reader_errors`) and the timer armed again.
* **Bounds**: TCP/TLS connections, admitted as they are accepted (:mod:`stun.aio_streams`,
  ``limits``: how many, how many from one source, TLS handshakes and their deadline, the first
  message's deadline); one that had no allocation within ``max_allocate_timeout`` of its accept,
  or holds none and was silent for ``idle_timeout``, is closed. What waits to be written to a
  connection that does not read
  (``write_buffer_limit``: beyond it, relayed data is dropped, not queued), relayed sockets (as many
  as the quotas allow: two per allocation plus the reservations), metrics connections.
* **TCP relays** (RFC 6062, :mod:`turn.server.aio_tcp`): listeners on the relayed addresses of
  TCP allocations, connections to peers, and client data connections spliced to them. A client
  stream whose ConnectionBind succeeds stops being framed: the bytes after that request go as-is
  to the peer. The core's later answers (a Connect's) and ConnectionAttempt indications, and its
  TCP commands, are carried out after every batch.
* **Session log**: every event of the core (allocations, permissions, channels, refusals and
  why) as one INFO line on the ``icestack.turn.server`` logger (:mod:`turn.server.session_log`).
* **Metrics** in the Prometheus text format (:func:`render_metrics`), served over HTTP by
  :meth:`TurnServer.serve_metrics` (loopback by default).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

from stun import Address, AddressFamily, LocalProtocolError, make_address
from stun.aio import (
    Listener,
    StreamListener,
    Transport,
    _Closing,
    bind_udp,
    check_listener_arguments,
    listen_stream,
)
from stun.datagram import Datagram
from stun.errors import DecodeError
from stun.framing import Framing, StreamDecoder
from stun.limits import Closure, StreamAdmission, StreamLimits
from stun.metrics_http import Exposition, MetricsServer, MetricsSource
from stun.outcomes import Outcome as StunOutcome
from stun.reader_errors import TIMER, ReaderErrors

from ..transport import ClientTransport
from . import aio_tcp
from .aio_tcp import PeerConnectionProtocol, TcpRelays
from .aio_udp import UdpRelays, _SendToClient, _UdpClients
from .allocation import FiveTuple
from .config import TurnServerConfig
from .connections import ConnectionState
from .core import TurnServerCore
from .relays import DYNAMIC_PORTS
from .session_log import describe
from .stats import Outcome, TurnServerStats

_log = logging.getLogger("icestack.turn")
#: One INFO line per session event (turn.server.session_log).
_session_log = logging.getLogger("icestack.turn.server")

#: How long after a core's bug in the timer it is called again.
_TIMER_RETRY = 1.0
#: The shortest wait between two deadline checks of a connection.
_DEADLINE_RESOLUTION = 0.1


@dataclass(slots=True)
class TransportStats:
    """What the asyncio layer counts, besides the core's :class:`~turn.server.TurnServerStats`."""

    #: Datagrams the kernel refused to send (a full socket buffer, an ICMP error reported back).
    send_errors: int = 0
    #: Messages dropped because a TCP/TLS client had not read what was already written to it.
    write_buffer_drops: int = 0
    #: Peer connections to relayed addresses that accept() could not take for want of
    #: resources (EMFILE, ENOBUFS); the listener rests a second.
    peer_accept_failures: int = 0
    #: Connections closed because their bytes could not be framed.
    stream_garbage: int = 0
    #: Relay allocations that found no port or socket (the core answers them 508).
    relay_failures: int = 0


class _StreamClient(asyncio.Protocol):
    """One client's TCP or TLS connection: STUN and ChannelData frames in, answers out.

    Its deadlines (:meth:`_check_deadlines`): the first complete message within
    ``first_message_timeout``; an allocation (or a ConnectionBind that makes it a data
    connection) within ``max_allocate_timeout`` of the accept; once it holds neither, a message
    at least every ``idle_timeout``.
    """

    def __init__(self, server: TurnServer, kind: ClientTransport) -> None:
        self.server = server
        self.kind = kind
        self.decoder = StreamDecoder(server.framing)
        self.transport: asyncio.Transport | None = None
        self.local = self.remote = Address("", 0)
        self.accepted_at = self.last_active = 0.0
        #: Whether a complete message came, and whether the connection had an allocation or a
        #: peer connection (after which ``max_allocate_timeout`` no longer applies).
        self.spoke = self.served = False
        self.idle_timer: asyncio.TimerHandle | None = None
        #: The peer connection this stream is the client data connection of (RFC 6062 §5.4).
        self.peer: PeerConnectionProtocol | None = None

    @property
    def five_tuple(self) -> FiveTuple:
        return FiveTuple(self.remote, self.local, self.kind)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        own = transport.get_extra_info("sockname")
        self.remote = make_address(peer[0], peer[1])
        self.local = make_address(own[0], own[1])
        server = self.server
        server._streams[(self.remote, self.local)] = self
        self.accepted_at = self.last_active = server.loop.time()
        self._arm_idle_timer(server.limits.first_message_timeout)

    def _arm_idle_timer(self, delay: float) -> None:
        self.idle_timer = self.server.loop.call_later(delay, self._check_deadlines)

    def _check_deadlines(self) -> None:
        """Close the connection if one of its deadlines has passed, else check again at the
        next; a bug of the core here is contained, and the check armed again."""
        server = self.server
        try:
            closure, delay = self._next_deadline()
        except Exception as error:
            server.timer_errors.contain(error, f"the connection from {self.remote}", TIMER)
            closure, delay = None, server.idle_timeout
        if closure is None:
            self._arm_idle_timer(max(delay, _DEADLINE_RESOLUTION))
        elif self.transport is not None and not self.transport.is_closing():
            server.admission.closed[closure] += 1
            self.transport.abort()

    def _next_deadline(self) -> tuple[Closure | None, float]:
        """The deadline that has passed, or ``None`` and how long until the next one."""
        server = self.server
        if not self.spoke:
            return Closure.FIRST_MESSAGE_TIMEOUT, 0.0
        if server.core.allocation(self.five_tuple) is not None or self.peer is not None:
            self.served = True
            return None, server.idle_timeout
        now = server.loop.time()
        idle_left = server.idle_timeout - (now - self.last_active)
        if idle_left <= 0:
            return Closure.IDLE, 0.0
        if self.served:
            return None, idle_left
        allocate_left = server.max_allocate_timeout - (now - self.accepted_at)
        if allocate_left <= 0:
            return Closure.ALLOCATE_TIMEOUT, 0.0
        return None, min(idle_left, allocate_left)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.from_client(data)
            return
        server = self.server
        held = self.decoder.buffered
        try:
            frames = self.decoder.feed(data)
        except DecodeError:
            server.transport_stats.stream_garbage += 1
            assert self.transport is not None
            self.transport.abort()
            return
        if not frames:  # a part of a message: no deadline moves for it
            return
        now = self.last_active = server.loop.time()
        if not self.spoke:  # the deadlines from here on are the later ones
            self.spoke = True
            if self.idle_timer is not None:
                self.idle_timer.cancel()
            self._check_deadlines()
            if self.transport is None or self.transport.is_closing():
                return
        core = server.core
        handle = core.handle_datagram
        local, remote, kind = self.local, self.remote, self.kind
        for index, frame in enumerate(frames):
            try:
                out = handle(frame, local, remote, now, transport=kind)
            except Exception as error:
                server.reader_errors.contain(error, f"the connection from {remote}")
                continue
            if out is not None:
                if out.local == local:
                    self.send(out.data, out.remote)
                else:
                    server.relays.send(out)
            if core.connections.commands:
                server._run_tcp_commands()
                if self.peer is not None:  # a ConnectionBind succeeded: raw bytes from here
                    rest = data[_framed_size(frames[: index + 1]) - held :]
                    if rest:
                        self.peer.from_client(rest)
                    break
        try:
            server._after_batch()
        except Exception as error:
            server.reader_errors.contain(error, f"the connection from {remote}")

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.client_full(True)

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.client_full(False)

    def send(self, data: bytes, remote: Address) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > self.server.write_buffer_limit:
            self.server.transport_stats.write_buffer_drops += 1
            return
        transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        server = self.server
        if server._streams.get((self.remote, self.local)) is self:
            del server._streams[(self.remote, self.local)]
            if not server.closing:
                server.core.connection_closed(self.five_tuple)
                server._after_batch()


def _framed_size(frames: list[bytes]) -> int:
    """How many stream bytes ``frames`` took: ChannelData was padded to four bytes on the stream
    and the decoder stripped the padding (RFC 8656 §12.5); STUN messages are whole already."""
    return sum(len(frame) + (-len(frame) & 3 if frame[0] >= 0x40 else 0) for frame in frames)


def relay_hosts_by_family(hosts: Iterable[str]) -> dict[AddressFamily, str]:
    """The relay IP address of each family; raises :class:`stun.LocalProtocolError`."""
    by_family: dict[AddressFamily, str] = {}
    for text in hosts:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise LocalProtocolError(f"relay address {text!r} is not an IP address") from None
        if ip.is_unspecified or ip.is_multicast:
            raise LocalProtocolError(
                f"relay address {text}: a relayed address must be a unicast address of this host"
            )
        family = AddressFamily.IPV6 if ip.version == 6 else AddressFamily.IPV4
        if family in by_family:
            raise LocalProtocolError(f"one relay address per family: {by_family[family]}, {text}")
        by_family[family] = str(ip)
        try:
            bind_udp(str(ip), 0, receive_buffer=None).close()
        except OSError as exc:
            raise LocalProtocolError(f"relay address {text}: {exc.strerror}") from None
    if not by_family:
        raise LocalProtocolError("a TURN server needs a relay address (relay_hosts)")
    return by_family


class TurnServer(_Closing):
    """An asyncio TURN server: one :class:`TurnServerCore` behind any number of listeners.

    ``relay_hosts`` are the IP addresses relayed addresses are bound on (one per family; the
    families offered are those of ``config.relay_families`` that have one), ``relay_ports`` the
    ports they take. TCP allocations (RFC 6062) are served where the platform has
    ``SO_REUSEPORT`` and ``config.tcp_relays`` allows. Build it inside a running event loop.
    ``batch_io=False`` reads and sends UDP (client listeners and relayed addresses) one datagram
    per system call even where batches are available (:mod:`stun.batch_io`).

    >>> async with TurnServer(config, relay_hosts=["192.0.2.1"]) as server:  # doctest: +SKIP
    ...     await server.listen("udp", "192.0.2.1", 3478)
    ...     await server.serve_forever()
    """

    def __init__(
        self,
        config: TurnServerConfig,
        *,
        relay_hosts: Iterable[str],
        relay_ports: range = DYNAMIC_PORTS,
        limits: StreamLimits | None = None,
        idle_timeout: float = 60.0,
        max_allocate_timeout: float = 60.0,
        write_buffer_limit: int = 256 * 1024,
        batch_io: bool = True,
    ) -> None:
        hosts = relay_hosts_by_family(relay_hosts)
        families = config.relay_families & frozenset(hosts)
        if not families:
            raise LocalProtocolError("no relay address of a family config.relay_families offers")
        config = dataclasses.replace(config, relay_families=families)
        self.loop = asyncio.get_running_loop()
        self.limits = limits = limits or StreamLimits()
        #: The TCP and TLS connections held, by source, and what was refused or closed and why.
        self.admission = StreamAdmission(limits)
        self.idle_timeout = idle_timeout
        self.max_allocate_timeout = max_allocate_timeout
        self.write_buffer_limit = write_buffer_limit
        self.batch_io = batch_io
        self.transport_stats = TransportStats()
        #: Exceptions the core raised on a datagram, contained and counted (a bug if any;
        #: :mod:`stun.reader_errors`).
        self.reader_errors = ReaderErrors()
        #: Exceptions the core raised in the server's timer or a connection's deadline check,
        #: contained the same way (the timer is armed again).
        self.timer_errors = ReaderErrors()
        max_relays = 2 * config.total_quota + config.max_reservations
        self.relays = UdpRelays(self, hosts, relay_ports, max_relays=max_relays)
        #: The TCP side of TCP allocations' relayed addresses (``None`` where it cannot run).
        self.tcp_relays = TcpRelays(self) if aio_tcp.AVAILABLE else None
        self.core = TurnServerCore(
            config,
            self.relays,
            tcp_listeners=self.tcp_relays,
            wall_clock_offset=time.time() - self.loop.time(),
        )
        #: How client streams are cut: ChannelData first bytes go to 0x7F for RFC 5766 channels.
        self.framing = (
            Framing.STUN_OR_RFC5766_CHANNEL_DATA
            if config.rfc5766_channels
            else Framing.STUN_OR_CHANNEL_DATA
        )
        self.listeners: list[Listener] = []
        self.closing = False
        self._udp: dict[Address, _UdpClients] = {}
        self._stream_listeners: list[StreamListener] = []
        self._streams: dict[tuple[Address, Address], _StreamClient] = {}
        self._metrics_servers: list[MetricsServer] = []
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ listeners

    async def listen(
        self,
        transport: Transport,
        host: str,
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> Listener:
        """Open one client listener; ``port=0`` picks a free one. TLS needs ``ssl_context``."""
        check_listener_arguments(transport, ssl_context)
        if transport == "udp":
            udp = _UdpClients(self, bind_udp(host, port, reuse_port=reuse_port))
            self._udp[udp.local] = udp
            result = Listener("udp", udp.local)
        else:
            kind = ClientTransport.TLS if transport == "tls" else ClientTransport.TCP
            stream = await listen_stream(
                host,
                port,
                lambda local: _StreamClient(self, kind),
                admission=self.admission,
                ssl_context=ssl_context,
                reuse_port=reuse_port,
            )
            self._stream_listeners.append(stream)
            result = Listener(transport, stream.local)
        self.listeners.append(result)
        _log.info("TURN server listening on %s", result)
        return result

    @property
    def connection_count(self) -> int:
        """TCP and TLS connections held now, TLS handshakes included: never more than
        ``limits.max_connections``."""
        return self.admission.connections

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting to be written to TCP and TLS clients; at most about
        ``write_buffer_limit`` (and one message) per connection."""
        return sum(
            stream.transport.get_write_buffer_size()
            for stream in self._streams.values()
            if stream.transport is not None
        )

    def _client_side(self, relay: Address) -> _SendToClient | None:
        """How to reach the client of the allocation of ``relay``: its UDP listener's socket or
        its stream connection."""
        allocation = self.core.table.by_relay(relay)
        if allocation is None:
            return None
        client, server, transport = allocation.five_tuple
        if transport is ClientTransport.UDP:
            udp = self._udp.get(server)
            return None if udp is None else udp.queue  # queued until the batch ends
        stream = self._streams.get((client, server))
        return None if stream is None else stream.send

    def _deliver(self, datagram: Datagram) -> None:
        """Send a datagram the core queued: to a client on its stream or UDP listener, or to a
        peer. What the core queues (RFC 6062's later answers and indications) is for TCP and TLS
        clients, so a stream between the two addresses comes first: a UDP listener may share
        the stream listener's address."""
        local, remote = datagram.local, datagram.remote
        stream = self._streams.get((remote, local))  # type: ignore[arg-type]
        if stream is not None:
            stream.send(datagram.data, remote)
            return
        udp = self._udp.get(local)  # type: ignore[arg-type]
        if udp is not None:
            udp.send(datagram.data, remote)
        else:
            self.relays.send(datagram)

    def _run_tcp_commands(self) -> None:
        tcp_relays = self.tcp_relays
        for command in self.core.tcp_commands():
            if tcp_relays is not None:
                tcp_relays.run(command)

    # ------------------------------------------------------------------ time

    def _after_batch(self) -> None:
        """Deliver what the core queued, carry out its TCP commands, log what it reports, and
        re-arm the timer: after anything that can change them."""
        core = self.core
        for datagram in core.datagrams_to_send(self.loop.time()):
            self._deliver(datagram)
        if core.connections.commands:
            self._run_tcp_commands()
        _log_session_events(core)
        deadline = core.get_timer()
        if deadline == self._deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._deadline = deadline
        self._timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._deadline = None
        now = self.loop.time()
        self.core.wall_clock_offset = time.time() - now
        try:
            self.core.handle_timer(now)
            self._after_batch()
        except Exception as error:
            # A bug of the core, contained as the readers contain theirs: the timer is armed
            # again, a second from now at the soonest, so that a bug that fires every time
            # cannot spin (handle_timer called early does no harm).
            self.timer_errors.contain(error, "the TURN server", TIMER)
            if self._timer is not None:
                self._timer.cancel()
            self._deadline = now + _TIMER_RETRY
            self._timer = self.loop.call_at(self._deadline, self._on_timer)

    # ------------------------------------------------------------------ metrics

    async def serve_metrics(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sources: Iterable[MetricsSource] = (),
    ) -> Address:
        """Serve :meth:`render_metrics` over HTTP at ``(host, port)``, followed on the same page
        by ``sources`` (e.g. an ICE mux's ``render_metrics`` in the same process); return the
        address. The listener is :class:`stun.metrics_http.MetricsServer` (bounded, any ``GET``
        answered; Prometheus scrapes ``/metrics``)."""
        server = MetricsServer([self.render_metrics, *sources])
        self._metrics_servers.append(server)
        address = await server.listen(host, port)
        _log.info("TURN server metrics on http %s", address)
        return address

    def render_metrics(self) -> str:
        """This server's metrics (:func:`render_metrics`)."""
        return render_metrics(self)

    # ------------------------------------------------------------------ life

    @property
    def stats(self) -> TurnServerStats:
        """The core's :class:`~turn.server.TurnServerStats`."""
        return self.core.stats

    async def serve_forever(self) -> None:
        """Wait until :meth:`close` is called."""
        await self._closed.wait()

    async def close(self) -> None:
        """Stop every listener, close every connection and relayed socket."""
        self.closing = True
        for udp in self._udp.values():
            udp.reader.close()
        self._udp.clear()
        for stream in self._stream_listeners:
            stream.close()
        for connection in list(self._streams.values()):
            if connection.transport is not None:
                connection.transport.close()
        self._streams.clear()
        for stream in self._stream_listeners:
            await stream.wait_closed()
        for server in self._metrics_servers:
            await server.close()
        self._stream_listeners.clear()
        self._metrics_servers.clear()
        if self.tcp_relays is not None:
            self.tcp_relays.close()
        self.relays.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closed.set()


def _log_session_events(core: TurnServerCore) -> None:
    """Drain the core's events, one INFO line each on ``icestack.turn.server`` (when enabled)."""
    enabled = _session_log.isEnabledFor(logging.INFO)
    while (event := core.next_event()) is not None:
        if enabled:
            _session_log.info("%s", describe(event))


# =========================================================================== metrics

#: The authentication outcomes that are failures; a 401 challenge or a 438 for a stale nonce is
#: the normal course of the long-term credential mechanism (RFC 8489 §9.2), not a failure.
_AUTHENTICATION_FAILURES = (
    StunOutcome.INCOMPLETE_CREDENTIALS,
    StunOutcome.BID_DOWN,
    StunOutcome.UNKNOWN_USER,
    StunOutcome.BAD_INTEGRITY,
    StunOutcome.INVALID_NONCE,
)


def render_metrics(server: TurnServer) -> str:
    """The server's gauges and counters in the Prometheus text exposition format (0.0.4)."""
    core = server.core
    stats = core.stats
    counts = stats.counts
    now = server.loop.time()
    page = Exposition("icestack_turn_")
    metric = page.metric

    metric("allocations", "gauge", "Allocations held.", {"": core.allocation_count})
    metric("permissions", "gauge", "Permissions in force.", {"": core.permission_count(now)})
    metric("channels", "gauge", "Channels bound and in force.", {"": core.channel_count(now)})
    metric("relayed_sockets", "gauge", "Relayed addresses bound.", {"": len(server.relays)})
    admission = server.admission
    metric(
        "connections",
        "gauge",
        "TCP and TLS connections, TLS handshakes included.",
        {"": server.connection_count},
    )
    metric("tls_handshakes", "gauge", "TLS handshakes pending.", {"": admission.handshakes})
    metric(
        "buffered_bytes",
        "gauge",
        "Bytes waiting to be written to TCP and TLS clients.",
        {"": server.buffered_bytes},
    )
    metric(
        "peer_connections",
        "gauge",
        "Peer TCP connections of TCP allocations (RFC 6062), by state.",
        {
            f'{{state="{state.name.lower()}"}}': core.connections.count_in(state)
            for state in ConnectionState
        },
    )
    metric(
        "relayed_packets_total",
        "counter",
        "Datagrams relayed, by direction.",
        {
            '{direction="to_peer"}': counts[Outcome.RELAYED_TO_PEER],
            '{direction="to_client"}': counts[Outcome.RELAYED_TO_CLIENT],
        },
    )
    metric(
        "relayed_bytes_total",
        "counter",
        "Application bytes relayed, by direction.",
        {
            '{direction="to_peer"}': stats.bytes_to_peer,
            '{direction="to_client"}': stats.bytes_to_client,
        },
    )
    failures = {
        f'{{reason="{outcome.name.lower()}"}}': stats.authentication[outcome]
        for outcome in _AUTHENTICATION_FAILURES
    }
    failures['{reason="expired_credentials"}'] = counts[Outcome.EXPIRED_CREDENTIALS]
    failures['{reason="rate_limited"}'] = counts[Outcome.RATE_LIMITED]
    metric(
        "authentication_failures_total",
        "counter",
        "Requests refused (or dropped) for their credentials, by reason.",
        failures,
    )
    metric(
        "datagrams_total",
        "counter",
        "Datagrams from clients and peers, by what the server did with them.",
        {f'{{outcome="{outcome.name.lower()}"}}': n for outcome, n in counts.items()},
    )
    transport = server.transport_stats
    metric(
        "transport_events_total",
        "counter",
        "What the socket layer dropped or refused, by event.",
        {
            f'{{event="{field.name}"}}': getattr(transport, field.name)
            for field in dataclasses.fields(transport)
        },
    )
    metric(
        "connections_refused_total",
        "counter",
        "TCP and TLS connections closed as they were accepted, by the limit they met.",
        {f'{{reason="{refusal.name.lower()}"}}': n for refusal, n in admission.refused.items()},
    )
    metric(
        "connections_closed_total",
        "counter",
        "TCP and TLS connections the server closed for a deadline, by reason.",
        {f'{{reason="{closure.name.lower()}"}}': n for closure, n in admission.closed.items()},
    )
    metric(
        "reader_errors_total",
        "counter",
        "Exceptions the core raised on a datagram, contained by the readers (a bug if any).",
        {f'{{kind="{kind}"}}': n for kind, n in server.reader_errors.counts.items()},
    )
    metric(
        "timer_errors_total",
        "counter",
        "Exceptions the core raised in the server's timers, contained (a bug if any).",
        {f'{{kind="{kind}"}}': n for kind, n in server.timer_errors.counts.items()},
    )
    return page.text()
