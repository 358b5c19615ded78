"""What a TURN client's Allocate asks for, and what the server's answers must hold to be
believed (RFC 8656 §7, §8).

Values from the server are judged, not trusted: a LIFETIME beyond an hour is taken as an hour
(:data:`LONGEST_LIFETIME`), and an Allocate success must name one relayed address per family,
of the family asked for, that a datagram can reach (no port 0, no unspecified or multicast
address); otherwise :class:`~turn.client.TurnAllocation` fails the allocation.
"""

from __future__ import annotations

from stun import Address, AddressFamily, Attribute, ErrorResponse, Message, UnknownAttributes
from stun.address import family_of, is_destination

from ..attributes import (
    AdditionalAddressFamily,
    DontFragment,
    EvenPort,
    Lifetime,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    TurnAttrType,
)
from ..events import Failure
from .config import TurnClientConfig

#: The longest allocation lifetime the client believes (RFC 8656 §7.2: a server grants at most an
#: hour by default): a longer grant is refreshed as if it were an hour, so a server that says more
#: than it keeps does not let the allocation lapse unrefreshed.
LONGEST_LIFETIME = 3600.0


def allocate_attributes(config: TurnClientConfig, *, dont_fragment: bool) -> list[Attribute]:
    """The attributes of an Allocate request for ``config`` (§7.1); DONT-FRAGMENT with
    ``dont_fragment`` (off once the server has refused it)."""
    attributes: list[Attribute] = [RequestedTransport(config.relay_transport)]
    if config.lifetime is not None:
        attributes.append(Lifetime(config.lifetime))
    if config.reservation_token is not None:
        attributes.append(ReservationToken(config.reservation_token))
    if config.requested_family is not None:
        attributes.append(RequestedAddressFamily(config.requested_family))
    if config.dual_allocation:
        attributes.append(AdditionalAddressFamily(AddressFamily.IPV6))
    if config.even_port or config.reserve_next_port:
        attributes.append(EvenPort(reserve=config.reserve_next_port))
    if dont_fragment:
        attributes.append(DontFragment())
    return attributes


def granted_lifetime(response: Message) -> float | None:
    """The lifetime an Allocate or Refresh success grants (§7.3, §8), at most
    :data:`LONGEST_LIFETIME`; ``None`` if it carries no LIFETIME, or 0."""
    lifetime = response.get(Lifetime)
    if lifetime is None or lifetime.value == 0:
        return None
    return min(float(lifetime.value), LONGEST_LIFETIME)


def relayed_problem(config: TurnClientConfig, relayed: list[Address]) -> str | None:
    """What is wrong with the relayed addresses of an Allocate success (§7.3), if anything."""
    families = [family_of(address) for address in relayed]
    if not relayed:
        return "no XOR-RELAYED-ADDRESS"
    unusable = [str(address) for address in relayed if not is_destination(address)]
    if unusable:
        return f"no datagram can reach the relayed address {', '.join(unusable)}"
    if len(set(families)) != len(families) or len(relayed) > (2 if config.dual_allocation else 1):
        return f"unexpected relayed addresses {[str(a) for a in relayed]}"
    wanted = config.requested_family or AddressFamily.IPV4
    if config.reservation_token is None and wanted not in families:
        return f"no relayed address of the requested family {wanted.name}"
    return None


def refuses_dont_fragment(error: Failure) -> bool:
    """Whether an Allocate failed with 420 because the server does not know DONT-FRAGMENT
    (§7.4): the client then asks again without it."""
    if not isinstance(error, ErrorResponse) or error.code != 420 or error.response is None:
        return False
    unknown = error.response.get(UnknownAttributes)
    return unknown is not None and TurnAttrType.DONT_FRAGMENT in unknown.types
