"""TCP on the simulated network (:mod:`ice.netsim`): connections that open, carry bytes and close
through the same realms, links, NATs and firewall as datagrams, for machines that use TCP through
their driver (:class:`~ice.tcp.StreamMachine`, such as the ICE agent with ICE-TCP).

Theory of operation. The model is TCP as its two ends see it, at the level of segments: SYN,
SYN-ACK, data, FIN, RST. A machine's :class:`~ice.tcp.OpenTcp` sends a SYN from an ephemeral port
of its base's address (from the base's own port for a simultaneous open); a SYN that reaches a
port some machine listens on (:meth:`TcpModel.listen`) is offered to it (``tcp_accepted``) and
answered with a SYN-ACK, or with a RST when it refuses or when nobody listens there (connection
refused); a SYN that meets a connection its destination is opening to its source is a
simultaneous open, and both ends are established. Data segments deliver their bytes to the other
end's ``receive_stream``; :class:`~ice.tcp.CloseTcp` sends a FIN, which the other end reports with
``tcp_closed``, as it does a RST. A segment for a connection that no longer exists is answered
with a RST.

Segments cross links with the links' delay only — TCP's own retransmission and ordering hide
loss, duplication, jitter and reordering from the ends — so the bytes of a connection arrive in
order. NATs map a connection when its SYN leaves the LAN, and nothing else opens a mapping: an
unsolicited SYN from outside finds none and is dropped (RFC 5382 §4, REQ-1 and §5); the mapping
and filtering behaviours are the NAT's, as for UDP. A firewall rule of
:meth:`~ice.netsim.Network.block` drops segments like datagrams (``transport="udp"`` lets them
pass). A SYN that is dropped gets no answer at all: the machine's own connect timeout ends the
attempt. :meth:`TcpModel.reset` resets connections for tests, as a middlebox or a crashed peer
would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stun.address import Address, normalize_host
from stun.datagram import Machine

from .errors import LocalProtocolError
from .netsim_values import Segment
from .tcp import CloseTcp, OpenTcp, StreamMachine, TcpCommand, WriteTcp

if TYPE_CHECKING:
    from .netsim import Attachment, Host, Network

#: The first ephemeral port a host connects from.
FIRST_EPHEMERAL_PORT = 40000


@dataclass(slots=True)
class TcpEnd:
    """One end of a simulated TCP connection: the machine's, under the machine's id for it."""

    attachment: Attachment[Machine]
    connection: int
    local: Address
    remote: Address
    established: bool
    #: Opened from the listening port itself (simultaneous open), not from an ephemeral one.
    simultaneous_open: bool = False


class TcpModel:
    """The TCP connections of a :class:`~ice.netsim.Network` (module docstring)."""

    def __init__(self, network: Network) -> None:
        self._network = network
        #: Every end, by (local address, remote address): unique over the network.
        self._ends: dict[tuple[Address, Address], TcpEnd] = {}
        #: Every end, by the machine and its id for the connection.
        self._by_machine: dict[tuple[int, int], TcpEnd] = {}
        #: Listening ports: (host name, port) -> the attachment.
        self._listeners: dict[tuple[str, int], Attachment[Machine]] = {}
        self._ephemeral: dict[str, itertools.count[int]] = {}

    @property
    def connections(self) -> list[TcpEnd]:
        """Every end of every connection, opening or established."""
        return list(self._ends.values())

    def listen(self, attachment: Attachment[Machine], port: int) -> None:
        """``attachment``'s machine accepts TCP connections on ``port`` of its host."""
        if attachment.stream is None:
            raise LocalProtocolError("only a machine with TCP notifications can listen")
        if not 0 < port <= 0xFFFF:
            raise LocalProtocolError(f"port out of range: {port}")
        key = (attachment.host.name, port)
        if key in self._listeners:
            raise LocalProtocolError(f"TCP port {port} of {attachment.host.name} is taken")
        self._listeners[key] = attachment
        attachment.tcp_ports.add(port)

    def detach(self, attachment: Attachment[Machine]) -> None:
        """The machine is gone: its listeners close and its connections vanish silently."""
        for port in attachment.tcp_ports:
            del self._listeners[(attachment.host.name, port)]
        attachment.tcp_ports.clear()
        for end in [e for e in self._ends.values() if e.attachment is attachment]:
            self._forget(end)

    def reset(self, address: str | None = None) -> int:
        """Reset, as a middlebox that drops its state would, every connection end whose own
        address or peer's address — as that end sees them — is on IP address ``address`` (every
        end when ``None``): each is told at once. Returns how many ends were reset."""
        host = None if address is None else normalize_host(address)
        ends = [
            end
            for end in self._ends.values()
            if host is None or host in (end.local.host, end.remote.host)
        ]
        for end in ends:
            self._forget(end)
        for end in ends:
            self._network.stats.tcp_reset += 1
            self._tell_closed(end, "reset")
        return len(ends)

    # ================================================================== the machine's commands

    def command(self, attachment: Attachment[Machine], command: TcpCommand) -> None:
        """Carry out one command of ``attachment``'s machine."""
        end = self._by_machine.get((id(attachment), command.connection))
        if isinstance(command, OpenTcp):
            self._open(attachment, command)
        elif end is None:
            return
        elif isinstance(command, WriteTcp):
            if end.established:
                self._send(end, Segment.DATA, command.data)
        elif isinstance(command, CloseTcp):
            self._forget(end)
            if end.established:
                self._send(end, Segment.FIN)

    def _open(self, attachment: Attachment[Machine], command: OpenTcp) -> None:
        host = attachment.host
        base = command.local
        if base.host not in host.addresses:
            raise LocalProtocolError(f"{host.name} has no address {base.host}")
        if command.simultaneous_open:
            if base.port not in attachment.tcp_ports:
                raise LocalProtocolError(
                    f"a simultaneous open from {base}, where it does not listen"
                )
            local = base
        else:
            counter = self._ephemeral.setdefault(host.name, itertools.count(FIRST_EPHEMERAL_PORT))
            local = Address(base.host, next(counter))
        remote = Address(normalize_host(command.remote.host), command.remote.port)
        if (local, remote) in self._ends:
            self._later(attachment, command.connection, "the address is in use")
            return
        end = TcpEnd(
            attachment,
            command.connection,
            local,
            remote,
            established=False,
            simultaneous_open=command.simultaneous_open,
        )
        self._add(end)
        self._send(end, Segment.SYN)

    def _later(self, attachment: Attachment[Machine], connection: int, reason: str) -> None:
        """Tell a machine at once, but not from inside its own command, that a connection
        failed."""
        stream = _stream(attachment)
        network = self._network
        network.call_at(network.now, lambda: stream.tcp_closed(connection, network.now, reason))

    # ================================================================== segments

    def deliver(
        self, host: Host, segment: Segment, source: Address, destination: Address, data: bytes
    ) -> None:
        """A segment reached ``host`` at ``destination``."""
        end = self._ends.get((destination, source))
        if segment is Segment.SYN:
            self._syn(host, end, source, destination)
        elif end is None:
            if segment is not Segment.RST:
                self._reply(host, destination, source, Segment.RST)
        elif segment is Segment.SYN_ACK:
            if not end.established:
                self._establish(end)
        elif segment is Segment.DATA:
            if end.established:
                _stream(end.attachment).receive_stream(end.connection, data, self._network.now)
                self._network._service(end.attachment)
        else:
            self._forget(end)
            if segment is Segment.RST:
                self._network.stats.tcp_refused += not end.established
                self._tell_closed(end, "reset by the peer" if end.established else "refused")
            else:
                self._tell_closed(end, "closed by the peer")

    def _syn(self, host: Host, end: TcpEnd | None, source: Address, destination: Address) -> None:
        if end is not None:
            if not end.established and end.simultaneous_open:
                self._establish(end)  # the SYNs crossed: a simultaneous open (RFC 9293 §3.5)
                self._send(end, Segment.SYN_ACK)
            return
        listener = self._listeners.get((host.name, destination.port))
        connection = (
            None
            if listener is None
            else _stream(listener).tcp_accepted(destination, source, self._network.now)
        )
        if listener is None or connection is None:
            self._reply(host, destination, source, Segment.RST)
            if listener is not None:
                self._network._service(listener)
            return
        end = TcpEnd(listener, connection, destination, source, established=True)
        self._add(end)
        self._network.stats.tcp_established += 1
        self._network._note("{} accepts {} -> {}", host.name, source, destination)
        self._send(end, Segment.SYN_ACK)
        self._network._service(listener)

    def _establish(self, end: TcpEnd) -> None:
        end.established = True
        network = self._network
        network.stats.tcp_established += 1
        network._note("{} connected {} -> {}", end.attachment.host.name, end.local, end.remote)
        _stream(end.attachment).tcp_connected(end.connection, network.now)
        network._service(end.attachment)

    def _tell_closed(self, end: TcpEnd, reason: str) -> None:
        network = self._network
        network._note(
            "{} closed {} -> {}: {}", end.attachment.host.name, end.local, end.remote, reason
        )
        if end.attachment.attached:
            _stream(end.attachment).tcp_closed(end.connection, network.now, reason)
            network._service(end.attachment)

    def _send(self, end: TcpEnd, segment: Segment, data: bytes = b"") -> None:
        self._network._send_segment(end.attachment.host, segment, end.local, end.remote, data)

    def _reply(self, host: Host, local: Address, remote: Address, segment: Segment) -> None:
        self._network._send_segment(host, segment, local, remote, b"")

    def _add(self, end: TcpEnd) -> None:
        self._ends[(end.local, end.remote)] = end
        self._by_machine[(id(end.attachment), end.connection)] = end

    def _forget(self, end: TcpEnd) -> None:
        self._ends.pop((end.local, end.remote), None)
        self._by_machine.pop((id(end.attachment), end.connection), None)


def _stream(attachment: Attachment[Machine]) -> StreamMachine:
    """The TCP notifications of an attachment's machine (only such machines have ends)."""
    stream = attachment.stream
    assert stream is not None
    return stream
