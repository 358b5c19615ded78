"""``aioice.candidate`` as seen through :mod:`ice.compat.aioice`: aioice's mutable
:class:`Candidate`, and its translation to and from :class:`ice.candidate.Candidate`.

aioice's candidate is a plain object with string fields (``type="host"``, ``tcptype``,
``related_address`` and ``related_port`` apart) and identity equality; aiortc reads and builds
it field by field. The SDP text is RFC 8839 §5.1's either way; parsing goes through
:meth:`ice.candidate.Candidate.from_sdp`, so its checks apply, and its errors arrive as the
``ValueError`` aioice raises.
"""

from __future__ import annotations

import ipaddress

from stun.address import Address

from ...candidate import Candidate as IceCandidate
from ...errors import IceError

__all__ = ["Candidate", "from_ice", "to_ice"]


class Candidate:
    """An ICE candidate with aioice's fields (RFC 8445 §5.1, written as RFC 8839 §5.1)."""

    def __init__(
        self,
        foundation: str,
        component: int,
        transport: str,
        priority: int,
        host: str,
        port: int,
        type: str,
        related_address: str | None = None,
        related_port: int | None = None,
        tcptype: str | None = None,
        generation: int | None = None,
    ) -> None:
        self.foundation = foundation
        self.component = component
        self.transport = transport
        self.priority = priority
        self.host = host
        self.port = port
        self.type = type
        self.related_address = related_address
        self.related_port = related_port
        self.tcptype = tcptype
        self.generation = generation
        #: The address the candidate is reached at (aioice's name; a ``.local`` name's address
        #: is resolved inside icestack, so this stays ``host``).
        self._network_host = host

    @classmethod
    def from_sdp(cls, sdp: str) -> Candidate:
        """Parse a ``candidate-attribute`` (``a=candidate:`` optional); ``ValueError`` if it is
        not one."""
        try:
            return from_ice(IceCandidate.from_sdp(sdp))
        except IceError as exc:
            raise ValueError(str(exc)) from None

    def to_sdp(self) -> str:
        """The ``candidate-attribute`` value, fields as they are."""
        sdp = (
            f"{self.foundation} {self.component} {self.transport} {self.priority} "
            f"{self.host} {self.port} typ {self.type}"
        )
        for name, value in (
            ("raddr", self.related_address),
            ("rport", self.related_port),
            ("tcptype", self.tcptype),
            ("generation", self.generation),
        ):
            if value is not None:
                sdp += f" {name} {value}"
        return sdp

    def can_pair_with(self, other: Candidate) -> bool:
        """Whether a local candidate pairs with a remote one: same component, transport and
        address family (RFC 8445 §6.1.2.2)."""
        family = ipaddress.ip_address(self._network_host).version
        return (
            self.component == other.component
            and self.transport.lower() == other.transport.lower()
            and family == ipaddress.ip_address(other._network_host).version
        )

    def __repr__(self) -> str:
        return f"Candidate({self.to_sdp()})"


def from_ice(candidate: IceCandidate) -> Candidate:
    """An icestack candidate as aioice's."""
    related = candidate.related_address
    return Candidate(
        foundation=candidate.foundation,
        component=candidate.component,
        transport=candidate.transport,
        priority=candidate.priority,
        host=candidate.host,
        port=candidate.port,
        type=candidate.type.value,
        related_address=related.host if related is not None else None,
        related_port=related.port if related is not None else None,
        tcptype=candidate.tcp_type.value if candidate.tcp_type is not None else None,
        generation=candidate.generation,
    )


def to_ice(candidate: Candidate) -> IceCandidate:
    """aioice's candidate as icestack's; :class:`ice.LocalProtocolError` for a field icestack
    refuses (a related address needs both host and port)."""
    related = None
    if candidate.related_address is not None and candidate.related_port is not None:
        related = Address(candidate.related_address, candidate.related_port)
    return IceCandidate(
        candidate.foundation,
        candidate.component,
        candidate.transport,
        candidate.priority,
        candidate.host,
        candidate.port,
        candidate.type,  # type: ignore[arg-type]  # the enum takes its value strings
        related_address=related,
        tcp_type=candidate.tcptype,  # type: ignore[arg-type]
        generation=candidate.generation,
    )
