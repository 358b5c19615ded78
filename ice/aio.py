"""asyncio face of ICE: :class:`Connection`, one ICE session over real UDP sockets.

Theory of operation. The connection owns sockets, the event loop's clock and queues, and nothing
else (architecture.md §2): every ICE decision is made by the sans-IO :class:`~ice.agent.Agent`.

- **Gathering.** :meth:`Connection.gather_candidates` lists interface addresses
  (:mod:`ice.interfaces`: loopback only with ``include_loopback``, link-local never, narrowed by
  ``interfaces``), binds one UDP socket per (component, address) — the agent's *bases*,
  :mod:`ice.base_sockets` — and runs the agent's gathering (a TURN server reached over TCP or
  TLS gets the connection the agent asks for, :mod:`ice.relay_streams`)
  until :class:`~ice.events.GatheringCompleted`. :meth:`Connection.trickle_candidates` yields the
  candidates as they come (RFC 8838).
- **Driving the agent.** Each socket is read on readiness in batches (``loop.add_reader``, up to
  :data:`~ice.base_sockets.UDP_BATCH` datagrams a wake-up). After anything reaches the agent, the
  connection sends
  what :meth:`~ice.agent.Agent.datagrams_to_send` returns, turns events into futures and queue
  entries, and moves its deadline from :meth:`~ice.agent.Agent.get_timer` in the loop's one
  timer shared by all its connections (:mod:`ice.timers`).
- **Data path** (:mod:`ice.base_sockets`). A datagram whose first byte is 0-3 is STUN (RFC 7983)
  and goes to the agent. Anything else from the selected pair's remote address goes straight
  into the receive queue; from elsewhere it goes to the agent, which delivers it only from the
  peer (a valid pair's remote, or the source of an authenticated check) and drops a stranger's
  (counted as ``data-not-from-peer``). Sends go straight to the selected pair's socket's
  outbox (:mod:`ice.outbox`): on Linux queued and sent many per ``sendmmsg`` when the loop's
  iteration ends or a batch is full (``batch_io=False``: one ``sendto`` each). The
  selected pair of each component is cached (updated on
  :class:`~ice.events.SelectedPairChanged`, dropped on :class:`~ice.events.ConsentLost`) and byte
  counts are handed to the agent in bulk (:meth:`~ice.agent.Agent.count_data`), so per datagram
  there is no agent call, no task and no allocation beyond the bytes. The receive queue is
  bounded: when it is full, datagrams are dropped and counted
  (:attr:`Connection.receive_queue_dropped`).
- **Ending.** Every wait ends with a result or an :class:`~ice.IceConnectionError` saying why:
  :meth:`Connection.connect` raises as soon as the agent fails (it fails by itself when nothing
  is left to try, ``idle_timeout`` after the peer fell silent, at consent loss, or when the only
  path's TURN allocation ends), :meth:`Connection.recv` when no component has a path any more,
  and gathering is bounded by ``gathering_timeout``. Failures are logged at INFO on
  ``icestack.ice`` with their reason.
- **ICE-TCP** (RFC 6544, :mod:`ice.tcp_sockets`). Next to each UDP socket a listening TCP
  socket is the agent's TCP base, on a port of its own; the agent's passive candidate is its
  address, its active one the same address with port 9. The connections the agent opens and
  accepts are carried out from its commands; their frames reach the agent, which hands data
  back as :class:`~ice.events.DataReceived`, and :meth:`Connection.send` on a TCP pair goes
  through the agent, which frames it. Writes past a bounded buffer are dropped and counted.
- **Releasing** (RFC 8445 §8.3, :mod:`ice.release`). Three seconds after completing, the agent
  forgets the bases no selected pair needs (:class:`~ice.events.CandidateLost` with
  ``released`` set), and the connection closes their sockets — with a UDP pair, the
  ICE-TCP listener — but a mux's, which other connections share.
- **Restart.** :meth:`Connection.restart` lists the interface addresses again (opening sockets
  for new ones and for those the agent released, closing those of gone ones), restarts the
  agent — which allocates again where an allocation is gone — and returns once the new
  generation's candidates are gathered.
- **mDNS** (:mod:`ice.mdns_candidates`). A remote ``.local`` candidate is resolved in the
  background (one shared resolver, a bounded number of lookups at a time and per generation)
  and added when resolved, or reported as :class:`~ice.mdns.CandidateUnresolvable`;
  end-of-candidates waits for pending resolutions. With ``mdns_hide_host_candidates`` our own
  host candidates are signalled as ``<uuid>.local`` names that a :class:`~ice.mdns.Responder`
  answers for. A relay-only connection does neither: it sends nothing on the local link.

Differences from aioice's ``Connection`` are listed in docs/ice.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable

from stun.address import Address
from stun.aio import _Closing
from stun.ports import PortRangeExhausted, check_port_range
from stun.reader_errors import ReaderErrors

from . import connection_options as options
from .agent import Agent
from .aio_events import ConnectionEvents
from .aio_mux import Mux
from .base_sockets import BaseSocket, DataPaths, Signal, bind_base
from .candidate import Candidate
from .config import AgentConfig, Policy
from .connection_options import StunServerArgument, TurnServerArgument
from .errors import IceConnectionError, LocalProtocolError
from .events import (
    IceEvent,
    IceState,
)
from .interfaces import interface_addresses, interface_problem
from .mdns import InterfaceAddress
from .mdns_candidates import MdnsCandidates, shared_addresses
from .outbox import Outbox
from .relay_streams import RelayStreams, tls_settings
from .server_names import resolve_servers
from .stats import PeerInput
from .tcp_sockets import TcpSockets
from .timers import SharedTimers, TimerEntry, shared_timers

_log = logging.getLogger("icestack.ice")

__all__ = ["Connection", "interface_addresses"]


class Connection(ConnectionEvents, _Closing):
    """One ICE session (one data stream of ``components`` components) over UDP, on asyncio.

    Close to aioice's ``Connection``; the differences are in docs/ice.md. Arguments:

    - ``controlling``: start in the controlling role (a role conflict may switch it).
    - ``components``: components of the data stream (1 with RTP/RTCP multiplexing).
    - ``stun_servers``: STUN servers to learn server-reflexive candidates from: ``(host, port)``
      pairs, or text — ``"host"``, ``"host:port"``, ``"[IPv6]:port"``, a ``stun:`` URI (RFC
      7064); names are resolved when gathering starts.
    - ``turn_servers``: TURN servers to allocate relayed candidates on: ``(host, port, username,
      password)`` (UDP), ``(uri, username, password)`` with a ``turn:``/``turns:`` URI (RFC 7065:
      UDP, TCP or TLS) or ``"host:port"``, ``(uri, TurnRestCredentials(secret, user))``; TLS is
      verified against the system CAs or ``turn_tls_cafile`` (``turn_tls_verify=False``: not at
      all). ``relay_only``: use relayed candidates only (WebRTC's
      "relay" transport policy), so the peer never learns an address of ours (not even in a
      relayed candidate's related address); nothing is sent to anything but the TURN servers
      (STUN servers are not asked, nothing goes on the local link by mDNS) and nothing arriving
      otherwise is read.
    - ``use_ipv4`` / ``use_ipv6`` / ``include_loopback`` / ``interfaces``: which local addresses
      to gather on; ``interfaces`` lists addresses or interface names to restrict gathering to
      (each must give an address to gather on here, or the call is refused saying why).
    - ``udp`` / ``tcp``: which transports to offer candidates on. With ``tcp`` (the default,
      as browsers do) every local address also gets TCP candidates (ICE-TCP, RFC 6544): a
      passive one on a listening socket and an active one, ranked below the UDP ones, so that
      a network that blocks UDP still connects; ``tcp=False`` offers none and ignores the
      peer's. ``udp=False`` offers TCP candidates only (no STUN or TURN server is used then).
    - ``pacing``: Ta, the pace of new checks (RFC 8445 §14.2).
    - ``local_username`` / ``local_password``: our ufrag and pwd, random when not given.
    - ``receive_queue_size``: datagrams held for :meth:`recv` before new ones are dropped.
    - ``mdns_hide_host_candidates``: signal host candidates as ``<uuid>.local`` names and answer
      mDNS queries for them; ``mdns_timeout``: how long to wait for a remote name's answer.
    - ``port_range``: ``(first, last)``: bind every socket of the connection — the UDP bases,
      the ICE-TCP listeners — to ports of that range (both ends included) instead of ephemeral
      ones, for a firewall that opens those only; when every port of the range is taken on an
      address, gathering raises :class:`~ice.IceConnectionError` naming the range. Outgoing
      TCP connections (active ICE-TCP, TURN over TCP/TLS) still leave from ephemeral ports.
    - ``advertised_addresses``: behind a 1:1 NAT (a cloud VM), the public address to offer host
      candidates with, as ``"PUBLIC"`` (every local address of its family) or
      ``"PUBLIC/PRIVATE"`` (that local address), coturn's ``--external-ip`` form; the private
      address is then not offered (pion's NAT 1:1 IPs with the host candidate type).
    - ``mux``: a :class:`~ice.aio_mux.Mux` (or :class:`~ice.aio_mux.UdpMux`): the connection's
      one UDP base is the mux's socket, shared with every other connection on it (one port for a
      whole server), instead of sockets of its own on every interface, and with ``tcp`` its one
      TCP base the mux's listening port (a passive candidate only); one component, and
      ``AgentConfig(lite=True)`` is the natural server mode; TURN servers over TCP or TLS only
      (over UDP all sessions would share one allocation's address: refused,
      :func:`~ice.connection_options.refuse_udp_relays_on_mux`). :class:`~ice.mux.MuxFull` from
      gathering when the mux serves its ``max_sessions``.
    - ``batch_io``: on Linux, read and send UDP many datagrams per system call
      (``recvmmsg``/``sendmmsg``, :mod:`ice.outbox`); ``False``: one ``recvfrom``/``sendto``
      per datagram, as the servers' ``--no-batch-io``. A connection on a ``mux`` uses the mux's.
    - ``config``: an :class:`~ice.config.AgentConfig` for everything else (timers, consent, lite,
      randomness, and the bounds on waiting: ``gathering_timeout``, ``idle_timeout``,
      ``peer_reflexive_wait``). An argument above that is given replaces the field it names
      (``components`` the one stream of ``streams``, ``relay_only=True`` the ``policy``); one
      left out (``None``) keeps the config's value — its ``stun_servers``, ``turn_servers``,
      ``pacing``, ``local_username``, ``local_password``.

    A wrong argument raises :class:`~ice.LocalProtocolError` at the call, naming the argument
    and what is wanted (:mod:`ice.connection_options`).
    """

    #: Every attribute of a connection, so that it has no instance dict: with this many
    #: attributes the dict is a full one (~2 KiB) per connection.
    __slots__ = (
        "__weakref__",
        "_agent",
        "_bases",
        "_closed",
        "_components",
        "_data_paths",
        "_data_signal",
        "_early_dropped",
        "_early_remote",
        "_end_sent",
        "_gathered_on",
        "_loop",
        "_mdns",
        "_mux",
        "_options",
        "_receive_queue_size",
        "_remote_end",
        "_setup",
        "_state_signal",
        "_stun_servers",
        "_tcp",
        "_timer_entry",
        "_timers",
        "_turn_servers",
        "_turn_tls",
        "reader_errors",
        "timer_errors",
    )

    def __init__(
        self,
        controlling: bool,
        *,
        components: int | None = None,
        stun_servers: Iterable[StunServerArgument] | None = None,
        turn_servers: Iterable[TurnServerArgument] | None = None,
        relay_only: bool = False,
        use_ipv4: bool = True,
        use_ipv6: bool = True,
        include_loopback: bool = False,
        interfaces: Iterable[str] | None = None,
        udp: bool = True,
        tcp: bool = True,
        pacing: float | None = None,
        local_username: str | None = None,
        local_password: str | None = None,
        receive_queue_size: int = 1024,
        mdns_hide_host_candidates: bool = False,
        mdns_timeout: float = 3.0,
        turn_tls_verify: bool = True,
        turn_tls_cafile: str | os.PathLike[str] | None = None,
        port_range: tuple[int, int] | None = None,
        advertised_addresses: Iterable[str] | None = None,
        mux: Mux | None = None,
        batch_io: bool = True,
        config: AgentConfig | None = None,
    ) -> None:
        switches = {
            "controlling": controlling,
            "relay_only": relay_only,
            "use_ipv4": use_ipv4,
            "use_ipv6": use_ipv6,
            "include_loopback": include_loopback,
            "mdns_hide_host_candidates": mdns_hide_host_candidates,
            "turn_tls_verify": turn_tls_verify,
            "udp": udp,
            "tcp": tcp,
            "batch_io": batch_io,
        }
        for name, value in switches.items():
            options.flag(name, value)
        options.whole_number("receive_queue_size", receive_queue_size, 1)
        options.seconds("mdns_timeout", mdns_timeout)
        checked_port_range = check_port_range(port_range, error=LocalProtocolError)
        if not use_ipv4 and not use_ipv6:
            raise LocalProtocolError("use_ipv4 and use_ipv6 cannot both be off")
        if mux is not None and not isinstance(mux, Mux):
            raise LocalProtocolError(f"mux is an ice.aio_mux.Mux, not {mux!r}")
        if mux is not None and (components or 1) != 1:
            raise LocalProtocolError("a connection on a mux has one component (RTP/RTCP muxed)")
        if mux is not None and not udp:
            raise LocalProtocolError("a connection on a mux offers UDP: udp=False is refused")
        #: The shared-port mux whose socket is this connection's one base, if any.
        self._mux = mux
        if mux is not None:
            tcp = tcp and mux.tcp is not None
        self._config = options.agent_config(
            config,
            controlling=controlling,
            components=components,
            pacing=pacing,
            local_username=local_username,
            local_password=local_password,
            relay_only=relay_only,
            udp=udp,
            tcp=tcp,
        )
        if mux is not None:
            self._config = options.on_mux(self._config)
        advertised = options.names("advertised_addresses", advertised_addresses)
        if advertised is not None:
            self._config = dataclasses.replace(self._config, advertised_addresses=tuple(advertised))  # type: ignore[arg-type]  # AgentConfig parses the text
        self._components = self._config.streams[0]
        #: The servers given as arguments (resolved when gathering starts); ``None``: the
        #: config's.
        self._stun_servers = None if stun_servers is None else options.stun_servers(stun_servers)
        self._turn_servers = None if turn_servers is None else options.turn_servers(turn_servers)
        if mux is not None:
            given = self._turn_servers
            options.refuse_udp_relays_on_mux(self._config.turn_servers if given is None else given)
        only = options.names("interfaces", interfaces)
        for name in only or ():
            problem = interface_problem(
                name,
                include_loopback=include_loopback,
                use_ipv4=use_ipv4,
                use_ipv6=use_ipv6,
                loopback_hint="pass include_loopback=True to use it",
            )
            if problem is not None:
                raise LocalProtocolError(f"interfaces: {name!r}: {problem}")
        self._options = options.gather_options(
            options.GatherOptions(
                use_ipv4=use_ipv4,
                use_ipv6=use_ipv6,
                include_loopback=include_loopback,
                interfaces=None if only is None else tuple(only),
                udp=udp,
                batch_io=batch_io,
                port_range=checked_port_range,
                mdns_timeout=mdns_timeout,
            )
        )
        self._receive_queue_size = receive_queue_size
        self._on_event: Callable[[IceEvent], None] | None = None  # ConnectionEvents.on_event
        #: Datagrams dropped because the receive queue was full.
        self.receive_queue_dropped = 0
        #: Exceptions the agent raised on a datagram, contained and counted (a bug if any;
        #: :mod:`stun.reader_errors`).
        self.reader_errors = ReaderErrors()
        #: Exceptions the agent's ``handle_timer`` raised, contained the same way.
        self.timer_errors = ReaderErrors()

        self._agent: Agent | None = None
        #: The event loop, from the first gather; everything that reads the clock comes after.
        self._loop: asyncio.AbstractEventLoop
        #: Gathering's start: ``False`` before it, the task while it runs (and once it failed
        #: or was cancelled, so that every later wait raises as it did), ``True`` once it ran
        #: (a finished future would hold 144 bytes for the connection's life).
        self._setup: asyncio.Future[None] | bool = False
        self._bases: dict[Address, BaseSocket] = {}
        #: The TCP/TLS connections to TURN servers (:mod:`ice.relay_streams`): made when
        #: gathering starts with TURN servers (or when asked for), with these TLS settings.
        self._turn_tls = tls_settings(turn_tls_cafile, turn_tls_verify)
        self._relay_streams: RelayStreams | None = None
        #: The TCP bases and connections (from the first gather, like the loop).
        self._tcp: TcpSockets | None = None
        #: The mDNS side (:mod:`ice.mdns_candidates`): made at once to hide our host
        #: candidates, else with the peer's first ``.local`` candidate (most sessions have none;
        #: it is 152 bytes).
        self._mdns: MdnsCandidates | None = None
        #: The interface addresses gathered on (a shared tuple), from the first gather.
        self._gathered_on: tuple[InterfaceAddress, ...] = ()
        if mdns_hide_host_candidates:
            self._mdns = self._new_mdns(hide_hosts=True)
        #: Our candidates as signalled, in the order gathered (this generation's).
        #: (A tuple: a few, and a list of one is 88 bytes, a tuple 48.)
        self._local_candidates: tuple[Candidate, ...] = ()
        #: Those of them lost since (their TURN allocation ended): no longer offered.
        #: (A tuple: rare, and the empty one is shared; an empty set is 216 bytes.)
        self._lost_local: tuple[Candidate, ...] = ()
        self._gathering_complete = False
        self._remote_username: str | None = None
        self._remote_password: str | None = None
        #: Candidates signalled before gathering started (at most ``max_remote_candidates``;
        #: ``None`` while there is none).
        self._early_remote: list[Candidate] | None = None
        self._early_dropped = 0
        self._remote_end = False
        self._end_sent = False
        #: The components selected since the (re)start: bit ``1 << component`` of each (a set
        #: of one is 216 bytes, a small int is shared).
        self._selected_since_restart = 0
        self._received: deque[tuple[bytes, int]] | None = None
        self._data_signal = Signal()
        self._state_signal = Signal()
        self._data_paths = DataPaths(self)
        #: The loop's one timer (:mod:`ice.timers`), from the first gather, like the loop.
        self._timers: SharedTimers
        self._timer_entry: TimerEntry | None = None
        self._timer_deadline: float | None = None
        #: A pump is due in this iteration of the loop (:meth:`_pump_soon`).
        self._pump_due = False
        self._closed = False

    def __repr__(self) -> str:
        role = "controlling" if self.controlling else "controlled"
        state = self._agent.state.value if self._agent else "new"
        return f"<Connection {self.local_username} {role} {state}>"

    # ================================================================== gathering

    async def gather_candidates(self) -> None:
        """Gather local candidates; returns when gathering is complete (aioice's name), at most
        ``gathering_timeout`` after the last request to a STUN or TURN server."""
        await self._start()
        await self._gathered()

    async def _gathered(self) -> None:
        while not self._gathering_complete:
            if self._closed:
                raise IceConnectionError("the connection was closed")
            await self._state_signal.wait(self._loop)

    async def trickle_candidates(self) -> AsyncIterator[Candidate]:
        """Gather, yielding each local candidate as soon as it is known (RFC 8838); the iteration
        ends when gathering is complete (signal end-of-candidates then)."""
        await self._start()
        index = 0
        while True:
            # A snapshot: the tuple is replaced, never changed, when a candidate comes, or when
            # a released one goes after gathering completed — read by index, that would skip
            # the candidate after it (it is then the last walk: gathering is complete).
            candidates = self._local_candidates
            if index < len(candidates):
                for candidate in candidates[index:]:
                    index += 1
                    if candidate not in self._lost_local:
                        yield candidate
                continue  # more may have come while the consumer held the iteration
            if self._gathering_complete or self._closed:
                return
            await self._state_signal.wait(self._loop)

    async def _start(self) -> None:
        if self._closed:
            raise IceConnectionError("the connection was closed")
        setup = self._setup
        if setup is False:
            self._loop = asyncio.get_running_loop()
            self._timers = shared_timers(self._loop)
            self._setup = setup = asyncio.ensure_future(self._open())
            setup.add_done_callback(self._opened)
        if setup is not True:
            await asyncio.shield(setup)

    def _opened(self, setup: asyncio.Future[None]) -> None:
        """Gathering has started: ``True`` takes the task's place (the task, its coroutine and
        context hold ~0.5 KiB for the connection's life); a failed or cancelled task stays, so
        that every later wait raises as it did."""
        if self._setup is setup and not setup.cancelled() and setup.exception() is None:
            self._setup = True

    async def _open(self) -> None:
        config = await resolve_servers(self._config, self._stun_servers, self._turn_servers)
        # The role may have been set while the names resolved.
        config = dataclasses.replace(
            config, controlling=self._config.controlling, remote_lite=self._config.remote_lite
        )
        if self._closed:
            raise IceConnectionError("the connection was closed")
        addresses = self._interface_addresses()
        # Our names published now (if hidden); the peer's resolved from its first .local name.
        self._gathered_on = shared_addresses(addresses)
        if self._mdns is not None:
            self._mdns.start(self._gathered_on)
        if not self._options.udp:  # STUN and TURN servers are reached from UDP bases only
            config = dataclasses.replace(config, stun_servers=(), turn_servers=())
        self._agent = agent = Agent(config)
        agent.progress_events = self._on_event is not None  # no one else reads them
        self._config = config  # one copy per connection: the agent's (same role and credentials)
        if config.turn_servers and self._relay_streams is None:
            self._relay_streams = RelayStreams(self, self._turn_tls)
        # Without ICE-TCP, nothing of it is made: no tables, no pump work; nor relay-only, where
        # a TCP base would get no candidate (and so never be released, its socket held open).
        if config.tcp_types and config.policy is not Policy.RELAY:
            self._tcp = TcpSockets(self, agent, self._options.port_range)
        self._add_bases(addresses)
        agent.gather(self._loop.time())
        self._apply_remote_credentials()
        if self._early_dropped:
            agent.failures.peer_input[PeerInput.REMOTE_CANDIDATES_FULL] += self._early_dropped
        early, self._early_remote = self._early_remote or (), None
        for candidate in early:
            self._add_remote(candidate)
        if self._remote_end:
            self._add_remote(None)
        self._pump()

    def _interface_addresses(self) -> list[InterfaceAddress]:
        if self._mux is not None:
            return [InterfaceAddress(self._mux.local.host, 0, "mux")]
        return interface_addresses(
            include_loopback=self._options.include_loopback,
            use_ipv4=self._options.use_ipv4,
            use_ipv6=self._options.use_ipv6,
            only=self._options.interfaces,
        )

    def _add_bases(self, addresses: list[InterfaceAddress]) -> None:
        """Open one UDP socket and the TCP bases per component on each address, as far as the
        agent lacks them (a restart re-opens those released, :meth:`_close_released`), and
        declare them to the agent; a port range with no free port left ends gathering, saying
        so."""
        agent = self.agent
        has_base = agent.gatherer.has_base
        try:
            for component in range(1, self._components + 1):
                for address in addresses:
                    host = address.host
                    if self._mux is not None:
                        self._attach_mux(self._mux, component)
                        continue
                    if self._options.udp and not has_base(0, component, host, tcp=False):
                        self._add_udp_base(component, host)
                    if self._tcp is not None:  # opens the TCP bases the agent lacks
                        udp_port = next(
                            (
                                base.local.port
                                for base in self._bases.values()
                                if base.component == component and base.local.host == host
                            ),
                            0,
                        )
                        self._tcp.add_bases(agent, component, host, avoid=udp_port)
        except PortRangeExhausted as exc:
            raise IceConnectionError(f"port_range: {exc.strerror}") from None

    def _add_udp_base(self, component: int, host: str) -> None:
        """Open the UDP base of ``component`` on ``host`` (a failure is logged and skipped)."""
        try:
            sock = bind_base(host, self._options.port_range)
        except PortRangeExhausted:
            raise
        except OSError as exc:
            _log.info("cannot gather on %s: %s", host, exc)
            return
        outbox = Outbox(sock, batch_io=self._options.batch_io)
        base = BaseSocket(self, sock, component, outbox)
        self._bases[base.local] = base
        self.agent.add_base(0, component, base.local)
        self._loop.add_reader(sock.fileno(), base.read_ready)

    def _attach_mux(self, mux: Mux, component: int) -> None:
        """The mux's socket is the one UDP base, and its TCP port, if the agent offers TCP
        candidates, the one (passive) TCP base: routed to this connection by its ufrag. At a
        restart, declared again to the agent if it released them (the mux keeps them open)."""
        agent = self.agent
        has_base = agent.gatherer.has_base
        tcp = self._tcp if agent.config.tcp_types and mux.tcp_local is not None else None
        base = next((b for b in self._bases.values() if b.component == component), None)
        if base is None:
            base = BaseSocket(self, mux.sock, component, mux.outbox)
            mux.attach(base, agent.local_username, tcp)
            self._bases[base.local] = base
        if not has_base(0, component, base.local.host, tcp=False):
            agent.add_base(0, component, base.local)
        tcp_local = mux.tcp_local
        if (
            tcp is not None
            and tcp_local is not None
            and not has_base(0, component, tcp_local.host, tcp=True)
        ):
            agent.add_tcp_base(0, component, tcp_local)

    def _close_released(self, address: Address | None) -> None:
        """The agent released a base it completed without (RFC 8445 §8.3, :mod:`ice.release`):
        close its socket — a UDP base, or a TCP base's listener — unless it is a mux's, shared
        with other connections. A restart opens what is missing again (:meth:`_add_bases`)."""
        if address is None or self._mux is not None:
            return
        base = self._bases.get(address)
        if base is not None:
            self._close_base(base)
        elif self._tcp is not None:
            self._tcp.close_base(address)

    def _close_base(self, base: BaseSocket) -> None:
        if base.mux is not None:
            base.mux.detach(base)
        else:
            self._loop.remove_reader(base.sock.fileno())
            base.outbox.close()  # what is queued goes out first (ice.outbox)
            base.sock.close()
        del self._bases[base.local]

    # ================================================================== remote candidates

    async def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """Add a candidate from signaling, or ``None`` for end-of-candidates (RFC 8838 §8.2).

        A ``.local`` candidate is resolved by mDNS in the background and added once resolved
        (or reported by a :class:`~ice.mdns.CandidateUnresolvable` event); end-of-candidates
        reaches the agent after every pending resolution. Candidates given before gathering
        starts wait for the agent: at most ``max_remote_candidates`` of them, and at most as
        many ``.local`` ones are taken per generation (the agent keeps no more); past that
        they are dropped and counted in ``agent.failures.peer_input``.
        """
        if candidate is not None and not isinstance(candidate, Candidate):
            raise LocalProtocolError(
                "add_remote_candidate takes an ice.Candidate (Candidate.from_sdp(line)) or None, "
                f"not {type(candidate).__name__}"
            )
        if self._closed:
            return
        if self._remote_end:
            raise LocalProtocolError("end-of-candidates was already signalled")
        if candidate is None:
            self._remote_end = True
        if self._agent is not None:
            self._add_remote(candidate)
        elif candidate is not None:  # end-of-candidates follows them when gathering starts
            early = self._early_remote
            if early is None:
                self._early_remote = early = []
            if len(early) < self._config.max_remote_candidates:
                early.append(candidate)
            else:
                self._early_dropped += 1

    def _add_remote(self, candidate: Candidate | None) -> None:
        agent = self._agent
        assert agent is not None
        usable = (
            candidate is not None
            and candidate.component <= self._components
            and (candidate.transport == "udp" or bool(self._config.tcp_types))
        )
        if candidate is None:
            self._end_candidates_when_resolved()
        elif candidate.is_mdns and usable:  # a TCP one without ICE-TCP is not worth a lookup
            if not self._resolving_mdns().resolve(candidate):
                agent.failures.peer_input[PeerInput.MDNS_LOOKUPS_FULL] += 1
        else:
            agent.add_remote_candidate(candidate)
        self._pump()

    def _end_candidates_when_resolved(self) -> None:
        resolving = self._mdns is not None and self._mdns.resolving
        if self._remote_end and not resolving and not self._end_sent and self._agent:
            self._end_sent = True
            self._agent.add_remote_candidate(None)

    def _new_mdns(self, *, hide_hosts: bool) -> MdnsCandidates:
        return MdnsCandidates(
            self,
            hide_hosts=hide_hosts,
            timeout=self._options.mdns_timeout,
            limit=self._config.max_remote_candidates,
            local_link=self._config.policy is not Policy.RELAY,
        )

    def _resolving_mdns(self) -> MdnsCandidates:
        """The mDNS side, made now (on the interfaces gathered on) if it was not."""
        mdns = self._mdns
        if mdns is None:
            mdns = self._mdns = self._new_mdns(hide_hosts=False)
            mdns.start(self._gathered_on)
        return mdns

    def _admit_resolved(self, candidate: Candidate) -> str | None:
        """Whether the agent can still take a ``.local`` candidate once resolved (``None``), or
        why not: then it is not looked up, and counted."""
        agent = self.agent
        if not agent.remote_candidates.full(0):
            return None
        agent.failures.peer_input[PeerInput.REMOTE_CANDIDATES_FULL] += 1
        limit = self._config.max_remote_candidates
        return f"the agent holds max_remote_candidates ({limit}) remote candidates already"

    def _resolved(self, candidate: Candidate, host: str | None) -> None:
        """A remote ``.local`` candidate was resolved to ``host`` (``None``: it could not be)."""
        if host is not None:
            self.agent.add_remote_candidate(dataclasses.replace(candidate, host=host))
        self._end_candidates_when_resolved()
        self._pump()

    # ================================================================== connecting

    async def connect(self) -> None:
        """Run the checks; return when every component has a selected pair (RFC 8445 §8).

        Raises :class:`~ice.IceConnectionError` with the agent's failure summary when ICE fails
        or when the connection closes. ICE fails once nothing is left to try after
        end-of-candidates (at once when no pair can ever be formed: no remote candidate of a
        usable family after ``peer_reflexive_wait``, or no local candidate at all — a relay-only
        connection whose TURN servers refused or are dead), or ``idle_timeout`` after the peer
        last showed itself while the agent waits for candidates or a nomination.
        """
        setup = self._setup
        if setup is False:
            raise IceConnectionError("gather_candidates() was not called")
        if setup is not True:
            if not setup.done():
                await asyncio.shield(setup)
            else:
                setup.result()  # a failed gathering raises here, as a wait on it would
        agent = self.agent
        if not (self._remote_username and self._remote_password):
            raise IceConnectionError("the remote username or password is missing")
        now = self._loop.time()
        agent.start_checks(now)
        self._pump(now=now)
        while self._selected_since_restart.bit_count() < self._components:
            if self._closed:
                raise IceConnectionError("the connection was closed")
            if agent.state is IceState.FAILED:
                raise IceConnectionError(f"ICE failed: {agent.failure_reason()}")
            await self._state_signal.wait(self._loop)

    async def restart(self) -> None:
        """ICE restart (RFC 8445 §9): new local ufrag/pwd and a new gathering of what is gone —
        sockets for new interface addresses (those of gone ones are closed), allocations that
        failed or ended; returns when :attr:`local_candidates` is complete again (bounded by
        ``gathering_timeout``). Then signal the credentials and candidates again, set the peer's
        new ones, and :meth:`connect`. Data keeps flowing on the current pairs, while they work,
        until new ones are selected; they are never taken as the new generation's."""
        if self._closed:
            raise IceConnectionError("the connection was closed")
        agent = self.agent
        self._pump()  # what the previous generation still had to say is said first
        addresses = self._interface_addresses()
        hosts = {address.host for address in addresses}
        known = {base.local.host for base in self._bases.values()}
        gone = [base for base in self._bases.values() if base.local.host not in hosts]
        listeners = [base for base, _ in self._tcp.listeners] if self._tcp is not None else []
        gone_tcp = [base for base in listeners if base.host not in hosts]
        known |= {base.host for base in listeners}
        added = [address for address in addresses if address.host not in known]
        self._add_bases(addresses)  # new addresses, and what was released on known ones
        self._gathered_on = shared_addresses(addresses)
        if self._mdns is not None:
            self._mdns.restart(self._gathered_on, added)
        self._local_candidates = ()
        self._lost_local = ()
        self._gathering_complete = False
        self._selected_since_restart = 0
        agent.restart(self._loop.time(), gone_bases=[base.local for base in gone] + gone_tcp)
        if self._mux is not None:
            for base in self._bases.values():
                self._mux.rename(base, agent.local_username)
        self._remote_username = self._remote_password = None
        self._remote_end = self._end_sent = False
        self._pump()
        for base in gone:
            self._close_base(base)
        for tcp_base in gone_tcp:
            assert self._tcp is not None  # a listener was gone
            self._tcp.close_base(tcp_base)
        await self._gathered()

    # ================================================================== data

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send a datagram on component 1."""
        await self.sendto(data, 1)

    async def sendto(self, data: bytes | bytearray | memoryview, component: int) -> None:
        """Send a datagram on a component's selected pair (``data`` must be bytes-like).

        On UDP it is queued and leaves with the loop's next batch (:mod:`ice.outbox`), in order;
        this waits only while the socket's buffer is full. An error the kernel gives for a
        batched datagram (not an ICMP one: those are skipped) is raised by the next send to the
        same address; :meth:`close` sends what is queued first."""
        if type(data) is not bytes:
            options.datagram(data)
            data = bytes(data)  # queued until the batch leaves: the caller may reuse its buffer
        path = None
        for selected in self._data_paths.paths:  # one per component with a path of ours
            if selected.component == component:
                path = selected
                break
        if path is None:
            if self._tcp is not None and self._tcp.send(component, data):
                return  # ICE-TCP: written to the selected pair's connection, framed
            agent = self._agent
            if self._data_paths.relayed(component) and agent is not None:
                try:
                    agent.send(data, 0, component)  # wrapped for the TURN server
                except LocalProtocolError as exc:
                    raise IceConnectionError(str(exc)) from None
                self._pump(timer_later=True)
                return
            raise IceConnectionError(self._no_path_reason(component))
        outbox = path.outbox
        if not outbox.put(data, path.remote) and not await outbox.send(
            data, path.remote, abandoned=lambda: self._closed
        ):
            raise IceConnectionError(self._no_path_reason(component))  # closed while waiting
        path.sent += len(data)

    async def recv(self) -> bytes:
        """The next datagram of any component."""
        data, _ = await self.recvfrom()
        return data

    async def recvfrom(self) -> tuple[bytes, int]:
        """The next datagram and the component it came on."""
        while not self._received:
            if self._closed:
                raise IceConnectionError("the connection was closed")
            if not self._data_paths:
                raise IceConnectionError(self._no_path_reason(1))
            await self._data_signal.wait(self._loop)
        return self._received.popleft()

    def _no_path_reason(self, component: int) -> str:
        if self._closed:
            return "the connection was closed"
        lost = self._data_paths.lost(component)
        if lost is not None:
            return lost
        if self._agent is None or self._agent.selected_pair(0, component) is None:
            return f"not connected: component {component} has no selected pair"
        return f"component {component} cannot send"

    # ================================================================== closing

    async def close(self) -> None:
        """Stop checks and consent, close every socket; waiting calls raise."""
        if self._closed:
            return
        self._closed = True
        if self._timer_deadline is not None:
            self._timer_deadline = None
            self._timers.schedule(self, None)
        if self._agent is not None:
            now = self._loop.time()
            self._data_paths.flush(now)
            self._agent.close(now)
            self._send(self._agent.datagrams_to_send(now))  # TURN deallocations, if any
            self._drain_events(self._agent.take_events())
        if self._relay_streams is not None:
            self._relay_streams.close()
        for base in list(self._bases.values()):
            self._close_base(base)
        if self._tcp is not None:
            self._tcp.close()
        self._data_paths.paths = ()
        if self._mdns is not None:
            self._mdns.close()
        self._data_signal.fire()
        self._state_signal.fire()
