"""The sockets of a Multicast DNS participant (RFC 6762), over asyncio.

One UDP socket per address family, bound to port 5353 with address and port sharing so that it
coexists with every other responder on the host (avahi-daemon, a browser; RFC 6762 §15.1), joined
to 224.0.0.251 / ff02::fb on each interface it is given. Multicast reaches every socket that
shares the port; unicast to 5353 reaches only one of them, which is why queriers and responders
here prefer multicast. Every datagram is read with the index of the interface it came in on
(``IP_PKTINFO`` / ``IPV6_PKTINFO``), so an answer goes back on that interface, and traffic from
interfaces we were not given is ignored. Everything is sent with an IP TTL / hop limit of 255
(§11).

Where port 5353 cannot be shared (a process holds it without ``SO_REUSEADDR``), a querier may
fall back to an ephemeral port: its queries are then one-shot queries (§5.1), answered by unicast
(§6.7) by responders that support those (avahi does, browsers do not).

Every datagram goes through :meth:`ice.dns.DnsMessage.decode`; what does not parse is dropped
and counted, and an exception of the handler is contained (:mod:`stun.reader_errors`: counted in
``handler_errors``, logged once per kind): the reader never raises into the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stun.reader_errors import ReaderErrors

from .dns import DnsMessage
from .errors import DecodeError
from .mdns_answers import MDNS_PORT

MDNS_GROUP_IPV4 = "224.0.0.251"
MDNS_GROUP_IPV6 = "ff02::fb"
_BUFFER = 9000  # the largest mDNS message (RFC 6762 §17)
_BATCH = 64
_TTL = 255
#: ``IP_PKTINFO``, which Python's socket module names only from 3.12 on some platforms.
_IP_PKTINFO: int | None = getattr(
    socket, "IP_PKTINFO", 8 if sys.platform.startswith("linux") else None
)
_ANCILLARY_SIZE = socket.CMSG_SPACE(32)

#: Where a datagram came in, or where to multicast: (address family, interface index). Index 0
#: means "unknown" (no packet info on this platform): every interface of the family.
Link = tuple[int, int]
#: A socket address as the socket module gives it: (host, port) or (host, port, flow, scope).
Sockaddr = tuple[Any, ...]
#: Called with every DNS message that arrived, where from, and on which link.
Handler = Callable[[DnsMessage, Sockaddr, Link], None]

_log = logging.getLogger("icestack.ice.mdns")


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """An IP address of a local interface, with the interface's index and name."""

    host: str
    index: int
    interface: str = ""

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


@dataclass(slots=True)
class _FamilySocket:
    sock: socket.socket
    #: Bound to port 5353 and joined to the group (else an ephemeral port for one-shot queries).
    shared: bool
    #: The interfaces it serves, one address each, by index.
    interfaces: dict[int, InterfaceAddress] = field(default_factory=dict)


class MdnsSockets:
    """The mDNS sockets on a set of interfaces; ``handler`` gets every message that arrives.

    Never raises: :attr:`problems` says why an interface or a family could not be used, and
    :attr:`links` lists the ones that can. Must be created inside a running event loop.
    """

    def __init__(
        self,
        interfaces: Iterable[InterfaceAddress],
        handler: Handler,
        *,
        one_shot_fallback: bool = False,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._families: dict[int, _FamilySocket] = {}
        self.problems: list[str] = []
        #: Why the last datagram that could not be sent was not (``None`` once one went out).
        self.send_error: str | None = None
        #: Datagrams that were not DNS messages, and exceptions of the handler, contained.
        self.undecodable = 0
        self.handler_errors = ReaderErrors()
        for interface in interfaces:
            self._add(interface, one_shot_fallback)
        for family, entry in list(self._families.items()):
            if entry.interfaces:
                self._loop.add_reader(entry.sock.fileno(), self._readable, family, entry)
            else:
                entry.sock.close()
                del self._families[family]

    def _add(self, interface: InterfaceAddress, one_shot_fallback: bool) -> None:
        family = interface.family
        entry = self._families.get(family)
        if entry is None:
            try:
                entry = _FamilySocket(_open(family, MDNS_PORT), shared=True)
            except OSError as exc:
                if not one_shot_fallback:
                    self.problems.append(
                        f"port {MDNS_PORT} of {_family_name(family)}: {exc.strerror}"
                    )
                    return
                try:
                    entry = _FamilySocket(_open(family, 0), shared=False)
                except OSError as again:
                    self.problems.append(
                        f"no {_family_name(family)} socket could be opened: {again.strerror}"
                    )
                    return
            self._families[family] = entry
        if interface.index in entry.interfaces:
            return
        try:
            if entry.shared:
                _join(entry.sock, interface)
            _set_multicast_interface(entry.sock, interface)
        except OSError as exc:
            self.problems.append(f"{interface.host}: {exc.strerror}")
            return
        entry.interfaces[interface.index] = interface

    @property
    def links(self) -> list[Link]:
        """Every (family, interface index) that can send and receive."""
        return [(f, index) for f, entry in self._families.items() for index in entry.interfaces]

    @property
    def interfaces(self) -> list[InterfaceAddress]:
        """One address of each interface in use, per family."""
        return [i for entry in self._families.values() for i in entry.interfaces.values()]

    def shared(self, family: int) -> bool:
        """Whether ``family``'s socket is on port 5353 (else queries from it are one-shot)."""
        entry = self._families.get(family)
        return entry is not None and entry.shared

    def send_to_group(self, data: bytes, link: Link) -> bool:
        """Multicast ``data`` on ``link`` (index 0: on every interface of the family); whether it
        went out on at least one."""
        family, index = link
        entry = self._families.get(family)
        if entry is None:
            return False
        targets = list(entry.interfaces.values()) if index == 0 else [entry.interfaces.get(index)]
        sent = False
        for interface in targets:
            if interface is None:
                continue
            try:
                _set_multicast_interface(entry.sock, interface)
                entry.sock.sendto(data, _group(interface))
            except OSError as exc:
                _log.debug("mDNS message on %s not sent: %s", interface.host, exc)
                self.send_error = f"{interface.host}: {exc.strerror or exc}"
                continue
            sent = True
        if sent:
            self.send_error = None
        return sent

    def send_to(self, data: bytes, link: Link, destination: Sockaddr) -> None:
        """Send ``data`` by unicast on ``link``'s socket."""
        entry = self._families.get(link[0])
        if entry is None:
            return
        try:
            entry.sock.sendto(data, destination)
        except OSError as exc:
            _log.debug("mDNS message to %s not sent: %s", destination, exc)

    def _readable(self, family: int, entry: _FamilySocket) -> None:
        for _ in range(_BATCH):
            try:
                data, ancillary, _, source = entry.sock.recvmsg(_BUFFER, _ANCILLARY_SIZE)
            except OSError:  # drained (BlockingIOError), or an ICMP error: nothing to read
                return
            index = _arrival_index(ancillary)
            if index and index not in entry.interfaces:
                continue  # an interface we were not given (another socket joined the group)
            try:
                message = DnsMessage.decode(data)
            except DecodeError:
                self.undecodable += 1
                continue
            try:
                self._handler(message, source, (family, index))
            except Exception as error:
                self.handler_errors.contain(error, f"mDNS message from {source[0]}")

    def close(self) -> None:
        """Stop reading and close the sockets."""
        for entry in self._families.values():
            self._loop.remove_reader(entry.sock.fileno())
            entry.sock.close()
        self._families.clear()


def _family_name(family: int) -> str:
    return "IPv6" if family == socket.AF_INET6 else "IPv4"


def _open(family: socket.AddressFamily, port: int) -> socket.socket:
    """A UDP socket on ``port`` (5353 shared with other responders, or 0), TTL 255, reporting
    the arrival interface of what it reads."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, _TTL)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, _TTL)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.bind(("::", port))
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, _TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, _TTL)
            if _IP_PKTINFO is not None:
                sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
            sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _arrival_index(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The interface index in a datagram's packet info (``in_pktinfo`` starts with it,
    ``in6_pktinfo`` ends with it), or 0."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= 4:
            return int(struct.unpack_from("@I", data)[0])
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            return int(struct.unpack_from("@I", data, 16)[0])
    return 0


def _group(interface: InterfaceAddress) -> Sockaddr:
    if interface.family == socket.AF_INET6:
        return (MDNS_GROUP_IPV6, MDNS_PORT, 0, interface.index)
    return (MDNS_GROUP_IPV4, MDNS_PORT)


def _set_multicast_interface(sock: socket.socket, interface: InterfaceAddress) -> None:
    """Send multicast through ``interface``."""
    if interface.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, interface.index)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface.host))


def _join(sock: socket.socket, interface: InterfaceAddress) -> None:
    """Join the mDNS group on ``interface``."""
    if interface.family == socket.AF_INET6:
        group = socket.inet_pton(socket.AF_INET6, MDNS_GROUP_IPV6)
        request = group + struct.pack("@I", interface.index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)
    else:
        request = socket.inet_aton(MDNS_GROUP_IPV4) + socket.inet_aton(interface.host)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
