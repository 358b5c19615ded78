"""The TURN client's data path (RFC 8656 §10, §12): data for a peer wrapped for the server, and
data from the server unwrapped to the peer it came from.

Out, data goes as ChannelData (:func:`turn.channel.encode_channel_data`) on a channel the server
has bound, else in a Send indication (:func:`send_indication`, §10.1). In, ChannelData counts on
a channel this client bound or is binding (the server may relay before its answer arrives,
§12.7), and a Data indication from a peer a datagram can come from, at an IP address with a
permission held or asked for (§10.4). What is not delivered comes back as the reason, which
:class:`~turn.client.TurnAllocation` counts in its ``dropped``. Each function looks up one table
entry at most: they run for every datagram.
"""

from __future__ import annotations

from collections.abc import Mapping

from stun import Address, Attribute, Message, MessageClass, Method, new_transaction_id
from stun.address import is_destination
from stun.client import ClientConfig

from .. import errors
from ..attributes import Data, DontFragment, Icmp, XorPeerAddress
from ..channel import decode_channel_data
from .leases import Channel, Grant, Permission

#: The most data one :meth:`~turn.client.TurnAllocation.send` carries: what still fits a Send
#: indication with an IPv6 XOR-PEER-ADDRESS, DONT-FRAGMENT and FINGERPRINT in STUN's 16-bit
#: length.
MAX_SEND_SIZE = (0xFFFF - (4 + 20) - 4 - 4 - 8) & ~3

#: The peer a datagram from the server came from and what it carried, or why it is dropped.
Unwrapped = tuple[Address, bytes] | str


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


def unwrap_channel_data(data: bytes, channels: Mapping[int, Channel]) -> Unwrapped:
    """The peer and payload of ChannelData from the server (§12.6), by channel number."""
    try:
        number, payload = decode_channel_data(data)
    except errors.DecodeError:
        return "malformed ChannelData"
    channel = channels.get(number)
    if channel is None or channel.grant is Grant.FAILED:
        return "unknown channel"
    return channel.peer, payload


def unwrap_data_indication(message: Message, permissions: Mapping[str, Permission]) -> Unwrapped:
    """The peer and payload of an indication from the server: a Data indication (§10.4) from a
    peer with a permission; one carrying ICMP (§18.13) or anything else is dropped."""
    if message.method != Method.DATA:
        return "not a Data indication"
    peer = message.get(XorPeerAddress)
    data = message.get(Data)
    if message.unknown_required or peer is None or data is None:
        return "ICMP" if message.has(Icmp) else "bad Data indication"
    if not is_destination(peer.address):
        return "unusable peer address"
    permission = permissions.get(peer.address.host)
    if permission is None or permission.grant is Grant.FAILED:
        return "no permission"  # §10.4: SHOULD check
    return peer.address, data.value
