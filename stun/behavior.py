"""The server's side of NAT behaviour discovery (RFC 5780 §6, §7, §9), sans-IO.

A server that supports behaviour discovery listens on two IP addresses of one family and two ports
(the *primary* address ``(A1, P1)`` and the *alternate* ``(A2, P2)``), four sockets in all. For
each Binding request :class:`BehaviorPlan` decides, from the socket the request arrived on and its
attributes:

* which socket answers (§6.1, §7.2): CHANGE-REQUEST asks for the other IP, the other port or both;
* where the answer goes (§7.5): to the request's source, or to RESPONSE-PORT on the source's IP;
* what every success response carries: OTHER-ADDRESS, the other IP *and* the other port relative to
  the socket the request reached (§7.4), and RESPONSE-ORIGIN, the answering socket (§7.3);
* how much PADDING the answer carries (§7.6).

Abuse (§9). CHANGE-REQUEST and RESPONSE-PORT let a request with a spoofed source aim an answer
at a port its victim did not use, and PADDING lets it make that answer large. So: an answer is
never padded beyond the size of the request it answers unless the request authenticated (then up
to ``padded_size``), requests that use those attributes are rate-limited per source
(:class:`stun.limits.SourceRateLimiter`, a bounded table), and a server may demand credentials for
them while answering plain Binding requests without (``ServerConfig.discovery_requires_auth``).

Over TCP and TLS the answer can only go back on its connection: CHANGE-REQUEST and RESPONSE-PORT
are refused there with 420 (§7.2 and §7.5 define them for UDP); OTHER-ADDRESS and
RESPONSE-ORIGIN are still given, so that a client can test its TCP mapping (§4.3).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .address import Address
from .attributes import (
    Attribute,
    ChangeRequest,
    OtherAddress,
    Padding,
    ResponseOrigin,
    ResponsePort,
)
from .errors import LocalProtocolError
from .message import Message

#: The attributes whose answer may go elsewhere or grow: what §9's protections apply to.
DISCOVERY_ATTRIBUTES = (ChangeRequest, ResponsePort, Padding)

#: A STUN message that fills a 1500-byte IPv4 datagram (less 20 bytes of IP, 8 of UDP header):
#: what an authenticated PADDING request gets, RFC 5780 §7.6's "MTU of the outgoing interface".
DEFAULT_PADDED_SIZE = 1472


@dataclass(frozen=True, kw_only=True, slots=True)
class BehaviorAddresses:
    """The two addresses of a behaviour-discovery server (RFC 5780 §6): ``primary`` is
    ``(A1, P1)``, ``alternate`` ``(A2, P2)``; the server listens on all four combinations."""

    primary: Address
    alternate: Address

    def __post_init__(self) -> None:
        hosts = []
        for name in ("primary", "alternate"):
            address = getattr(self, name)
            try:
                hosts.append(ipaddress.ip_address(address.host))
            except ValueError:
                raise LocalProtocolError(f"{name}: not an IP address: {address.host!r}") from None
            if not 0 < address.port <= 0xFFFF:
                raise LocalProtocolError(f"{name}: port must be 1 to 65535, not {address.port}")
        if hosts[0].version != hosts[1].version:
            raise LocalProtocolError("the two addresses must be of one family (RFC 5780 §6)")
        if hosts[0] == hosts[1] or self.primary.port == self.alternate.port:
            raise LocalProtocolError("the two addresses need different IPs and different ports")
        if hosts[0].is_unspecified or hosts[1].is_unspecified:
            raise LocalProtocolError("listen on concrete IP addresses, not the unspecified one")

    @property
    def sockets(self) -> tuple[Address, Address, Address, Address]:
        """The four (IP, port) combinations, the primary address first."""
        a1, p1 = self.primary
        a2, p2 = self.alternate
        return (self.primary, Address(a1, p2), Address(a2, p1), self.alternate)

    def other(self, local: Address, *, change_ip: bool, change_port: bool) -> Address | None:
        """The socket that differs from ``local`` as asked; ``None`` if ``local`` is none of
        the four."""
        (a1, p1), (a2, p2) = self.primary, self.alternate
        if local.host not in (a1, a2) or local.port not in (p1, p2):
            return None
        host = (a2 if local.host == a1 else a1) if change_ip else local.host
        port = (p2 if local.port == p1 else p1) if change_port else local.port
        return Address(host, port)


@dataclass(frozen=True, slots=True)
class BehaviorAnswer:
    """What :func:`plan_answer` decided: the answering socket, the destination, and the
    attributes to add to the success response (PADDING is sized last, by :func:`padding_for`)."""

    local: Address
    remote: Address
    attributes: tuple[Attribute, ...]
    padded: bool


def plan_answer(
    addresses: BehaviorAddresses, request: Message, local: Address, remote: Address
) -> BehaviorAnswer | None:
    """Where the answer to a UDP ``request`` that reached ``local`` from ``remote`` goes, and what
    it carries (RFC 5780 §6.1); ``None`` if ``local`` is not one of the server's four sockets (the
    request is then answered as a plain Binding request)."""
    change = request.get(ChangeRequest)
    answering = addresses.other(
        local,
        change_ip=change is not None and change.change_ip,
        change_port=change is not None and change.change_port,
    )
    if answering is None:
        return None
    response_port = request.get(ResponsePort)
    destination = remote if response_port is None else Address(remote.host, response_port.port)
    other = addresses.other(local, change_ip=True, change_port=True)
    assert other is not None
    return BehaviorAnswer(
        answering,
        destination,
        (ResponseOrigin(answering), OtherAddress(other)),
        request.has(Padding),
    )


def stream_attributes(addresses: BehaviorAddresses, local: Address) -> tuple[Attribute, ...]:
    """RESPONSE-ORIGIN and OTHER-ADDRESS for a request over TCP or TLS that reached ``local``."""
    other = addresses.other(local, change_ip=True, change_port=True)
    if other is None:
        return ()
    return (ResponseOrigin(local), OtherAddress(other))


def padding_for(unpadded_size: int, limit: int) -> Padding:
    """PADDING that brings a response of ``unpadded_size`` bytes up to at most ``limit`` bytes
    (§7.6); for an unauthenticated request ``limit`` is the request's own size (§9)."""
    room = limit - unpadded_size - 4  # the PADDING attribute's own header
    return Padding(bytes(max(0, room) & ~3))
