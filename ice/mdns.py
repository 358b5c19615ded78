"""Multicast DNS (RFC 6762) for ICE's ``.local`` host candidates, over asyncio.

Browsers hide the address of a host candidate behind a random ``<uuid>.local`` name (the mmusic
"mDNS ICE candidates" draft, answering RFC 8828's privacy concern). To use such a candidate an
agent resolves the name on its own links; an agent that hides its own addresses answers for its
names.

- :func:`resolve` sends one one-shot query (RFC 6762 §5.1) for the name's A and AAAA records to
  224.0.0.251 or ff02::fb, port 5353, from an ephemeral port on each interface it is given, and
  returns the first address answered. A responder answers a query from a port other than 5353 by
  unicast to that port (§6.7), so the resolver needs no socket on 5353. An interface that cannot
  send multicast is skipped; if none can, :func:`resolve` raises :class:`OSError` at once, and if
  nobody answers in time, :class:`TimeoutError`. Either way the caller reports the candidate as
  unresolvable (:class:`CandidateUnresolvable`) instead of failing.
- :class:`Responder` listens on port 5353 on the interfaces it is given and answers A/AAAA
  questions for the names it :meth:`~Responder.publish`\\ es: by unicast with the query's ID for
  one-shot queriers (§6.7), by unicast for questions with the unicast-response bit (§5.4), by
  multicast on the address's own interface otherwise (§6). Names are random UUIDs, so it skips
  probing for conflicts (§8).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import secrets
import socket
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from .candidate import Candidate
from .dns import AddressRecord, DnsMessage, Question, RecordType
from .errors import DecodeError
from .events import IceEvent

MDNS_PORT = 5353
MDNS_GROUP_IPV4 = "224.0.0.251"
MDNS_GROUP_IPV6 = "ff02::fb"
#: Records with host names live 120 s (RFC 6762 §10); answers to one-shot queriers at most 10 s
#: (§6.7).
HOST_RECORD_TTL = 120
LEGACY_TTL = 10
#: The question type "any" (RFC 1035 §3.2.3).
_ANY = 255
_BUFFER = 9000  # the largest mDNS message (RFC 6762 §17)
_BATCH = 64

_log = logging.getLogger("icestack.ice.mdns")


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """An IP address of a local interface, with the interface's index and name."""

    host: str
    index: int
    interface: str = ""


@dataclass(frozen=True, slots=True)
class CandidateUnresolvable(IceEvent):
    """A remote ``.local`` candidate could not be resolved by mDNS; it is left out."""

    candidate: Candidate
    reason: str


def _is_ipv6(host: str) -> bool:
    return ":" in host


def _group(interface: InterfaceAddress) -> tuple[str, int] | tuple[str, int, int, int]:
    if _is_ipv6(interface.host):
        return (MDNS_GROUP_IPV6, MDNS_PORT, 0, interface.index)
    return (MDNS_GROUP_IPV4, MDNS_PORT)


def _set_multicast_interface(sock: socket.socket, interface: InterfaceAddress) -> None:
    """Send multicast through ``interface``, with the IP TTL / hop limit of 255 (§11)."""
    if _is_ipv6(interface.host):
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, interface.index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface.host))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)


def _query_socket(interface: InterfaceAddress) -> socket.socket:
    family = socket.AF_INET6 if _is_ipv6(interface.host) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        _set_multicast_interface(sock, interface)
        sock.bind((interface.host, 0))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _answer(data: bytes, name: str) -> str | None:
    """The address a response gives for ``name`` (lower case), if it is one."""
    try:
        message = DnsMessage.decode(data)
    except DecodeError:
        return None
    if not message.response:
        return None
    for record in message.answers:
        if record.name.lower() == name:
            return record.address
    return None


async def resolve(
    name: str, interfaces: Iterable[InterfaceAddress], *, timeout: float = 1.0
) -> str:
    """Resolve an mDNS name to one IP address by a one-shot query (RFC 6762 §5.1).

    Raises :class:`OSError` when no interface could send the query and :class:`TimeoutError` when
    no answer came within ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    wanted = name.rstrip(".").lower()
    query = DnsMessage(
        id=secrets.randbits(16),
        questions=(Question(wanted, RecordType.A), Question(wanted, RecordType.AAAA)),
    ).encode()
    answered: asyncio.Future[str] = loop.create_future()

    def readable(sock: socket.socket) -> None:
        for _ in range(_BATCH):
            try:
                data, _ = sock.recvfrom(_BUFFER)
            except OSError:  # drained (BlockingIOError), or an ICMP error: nothing to read
                return
            address = _answer(data, wanted)
            if address is not None and not answered.done():
                answered.set_result(address)

    sockets: list[socket.socket] = []
    listening: list[socket.socket] = []
    problems: list[str] = []
    try:
        for interface in interfaces:
            try:
                sock = _query_socket(interface)
                sockets.append(sock)
                sock.sendto(query, _group(interface))
            except OSError as exc:
                problems.append(f"{interface.host}: {exc.strerror}")
                continue
            loop.add_reader(sock.fileno(), readable, sock)
            listening.append(sock)
        if not listening:
            detail = "; ".join(problems) or "no interface given"
            raise OSError(errno.ENETUNREACH, f"no interface can send mDNS queries ({detail})")
        try:
            return await asyncio.wait_for(answered, timeout)
        except TimeoutError:
            raise TimeoutError(f"no mDNS answer for {name} within {timeout:g} s") from None
    finally:
        for sock in listening:
            loop.remove_reader(sock.fileno())
        for sock in sockets:
            sock.close()


def _listening_socket(family: socket.AddressFamily) -> socket.socket:
    """A socket on port 5353, shared with any other responder on the host (RFC 6762 §15.1)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(("::", MDNS_PORT))
        else:
            sock.bind(("0.0.0.0", MDNS_PORT))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _join(sock: socket.socket, interface: InterfaceAddress) -> None:
    if _is_ipv6(interface.host):
        request = socket.inet_pton(socket.AF_INET6, MDNS_GROUP_IPV6) + struct.pack(
            "@I", interface.index
        )
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)
    else:
        request = socket.inet_aton(MDNS_GROUP_IPV4) + socket.inet_aton(interface.host)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)


def _answers_type(question: Question, address: str) -> bool:
    wanted = RecordType.AAAA if _is_ipv6(address) else RecordType.A
    return question.type in (wanted, _ANY)


class Responder:
    """Answers mDNS questions for the names it published, on the interfaces it was given.

    Must be created inside a running event loop. Raises :class:`OSError` when it can listen on
    none of the interfaces (port 5353 taken without address sharing, or no multicast).
    """

    def __init__(self, interfaces: Iterable[InterfaceAddress]) -> None:
        self._loop = asyncio.get_running_loop()
        self._names: dict[str, str] = {}
        self._by_address: dict[str, str] = {}
        self._interfaces: dict[str, InterfaceAddress] = {}
        self._sockets: dict[socket.AddressFamily, socket.socket] = {}
        problems = []
        for interface in interfaces:
            family = socket.AF_INET6 if _is_ipv6(interface.host) else socket.AF_INET
            try:
                sock = self._sockets.get(family) or _listening_socket(family)
                self._sockets[family] = sock
                _join(sock, interface)
            except OSError as exc:
                problems.append(f"{interface.host}: {exc.strerror}")
                continue
            self._interfaces[interface.host] = interface
        if not self._interfaces:
            self.close()
            detail = "; ".join(problems) or "no interface given"
            raise OSError(errno.EADDRNOTAVAIL, f"cannot answer mDNS queries ({detail})")
        for sock in self._sockets.values():
            self._loop.add_reader(sock.fileno(), self._readable, sock)

    @property
    def interfaces(self) -> list[InterfaceAddress]:
        """The interfaces it listens on."""
        return list(self._interfaces.values())

    def publish(self, address: str) -> str:
        """A ``<uuid>.local`` name that this responder answers with ``address`` (one name per
        address: publishing the same address again returns the same name)."""
        address = ipaddress.ip_address(address).compressed
        name = self._by_address.get(address)
        if name is None:
            name = f"{uuid.uuid4()}.local"
            self._by_address[address] = name
            self._names[name] = address
        return name

    def lookup(self, name: str) -> str | None:
        """The address published under ``name``, if any."""
        return self._names.get(name.rstrip(".").lower())

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(_BATCH):
            try:
                data, sockaddr = sock.recvfrom(_BUFFER)
            except OSError:
                return
            try:
                query = DnsMessage.decode(data)
            except DecodeError:
                continue
            if not query.response:
                self._answer(sock, query, sockaddr)

    def _answer(self, sock: socket.socket, query: DnsMessage, sockaddr: tuple[str, int]) -> None:
        questions = []
        addresses = []
        for question in query.questions:
            address = self.lookup(question.name)
            if address is not None and _answers_type(question, address):
                questions.append(question)
                addresses.append((question.name, address))
        if not addresses:
            return
        if sockaddr[1] != MDNS_PORT:
            # A one-shot querier (§6.7): unicast, the query's ID and questions, a short TTL.
            answer = DnsMessage(
                id=query.id,
                response=True,
                authoritative=True,
                questions=tuple(questions),
                answers=tuple(AddressRecord(n, a, LEGACY_TTL) for n, a in addresses),
            )
            self._send(sock, answer.encode(), sockaddr)
            return
        records = tuple(
            AddressRecord(n, a, HOST_RECORD_TTL, cache_flush=True) for n, a in addresses
        )
        response = DnsMessage(response=True, authoritative=True, answers=records).encode()
        if any(question.unicast_response for question in questions):
            self._send(sock, response, sockaddr)
            return
        for _, address in addresses:
            interface = self._interfaces.get(address)
            if interface is not None and (sock.family == socket.AF_INET6) == _is_ipv6(address):
                with contextlib.suppress(OSError):
                    _set_multicast_interface(sock, interface)
                    self._send(sock, response, _group(interface))

    @staticmethod
    def _send(sock: socket.socket, data: bytes, destination: tuple[object, ...]) -> None:
        try:
            sock.sendto(data, destination)
        except OSError as exc:
            _log.debug("mDNS answer to %s not sent: %s", destination, exc)

    def close(self) -> None:
        """Stop answering and close the sockets."""
        for sock in self._sockets.values():
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        self._names.clear()
        self._by_address.clear()
