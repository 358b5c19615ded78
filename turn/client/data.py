"""The TURN client's data path through STUN messages (RFC 8656 §10): data for a peer wrapped
in a Send indication, and data from a peer unwrapped from a Data indication.

Out, data goes in a Send indication (:func:`send_indication`, §10.1) unless a channel is bound
to the peer, when ChannelData (:mod:`turn.channel`) carries it with 4 bytes of overhead instead
of 36 or more. In, a Data indication counts from a peer a datagram can come from, at an IP
address with a permission held or asked for (§10.4); :func:`unwrap_data_indication` says who
sent what, or why the indication is dropped, for :class:`~turn.client.TurnAllocation` to count
in its ``dropped``. ChannelData from the server, the common case, is one lookup by channel
number that the allocation makes itself, so that nothing is added to that path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from stun import Address, Attribute, Message, MessageClass, Method, new_transaction_id
from stun.address import is_destination
from stun.client import ClientConfig

from ..attributes import Data, DontFragment, Icmp, XorPeerAddress
from .leases import Grant, Permission

#: The most data one :meth:`~turn.client.TurnAllocation.send` carries: what still fits a Send
#: indication with an IPv6 XOR-PEER-ADDRESS, DONT-FRAGMENT and FINGERPRINT in STUN's 16-bit
#: length.
MAX_SEND_SIZE = (0xFFFF - (4 + 20) - 4 - 4 - 8) & ~3


def send_indication(
    data: bytes, peer: Address, *, dont_fragment: bool, stun: ClientConfig
) -> bytes:
    """A Send indication carrying ``data`` to ``peer`` (§10.1), with DONT-FRAGMENT if asked for
    and the transaction ID and FINGERPRINT the ``stun`` config says."""
    attributes: list[Attribute] = [XorPeerAddress(peer), Data(data)]
    if dont_fragment:
        attributes.append(DontFragment())
    indication = Message(
        Method.SEND, MessageClass.INDICATION, new_transaction_id(stun.rng), attributes
    )
    return indication.encode(fingerprint=stun.fingerprint)


def unwrap_data_indication(
    message: Message, permissions: Mapping[str, Permission], drop: Callable[[str], None]
) -> tuple[Address, bytes] | None:
    """The peer and payload of an indication from the server: a Data indication (§10.4) from a
    peer with a permission. Anything else, such as one carrying ICMP (§18.13), is ``None``, and
    ``drop`` hears why."""
    if message.method != Method.DATA:
        drop("not a Data indication")
        return None
    peer = message.get(XorPeerAddress)
    data = message.get(Data)
    if message.unknown_required or peer is None or data is None:
        drop("ICMP" if message.has(Icmp) else "bad Data indication")
        return None
    if not is_destination(peer.address):
        drop("unusable peer address")
        return None
    permission = permissions.get(peer.address.host)
    if permission is None or permission.grant is Grant.FAILED:
        drop("no permission")  # §10.4: SHOULD check
        return None
    return peer.address, data.value
