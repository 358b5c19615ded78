"""What a TURN client holds for a while and keeps refreshing (RFC 8656): the allocation (§8), a
permission per peer IP address (§9) and a channel per peer transport address (§12), and the
tables of one allocation's permissions and channels.

A :class:`Lease` is refreshed ``refresh_margin`` seconds before it ends, at most a fifth of its
lifetime; while a refresh is in flight its expiry is the deadline instead (:attr:`Lease.deadline`).
:class:`PeerLeases` finds a permission by IP address and a channel by peer or by number in one
lookup each, holds at most ``max_permissions`` permissions and the 4096 channel numbers, and
caches the earliest deadline of them all, so that a timer does not walk the tables. Which
requests create and refresh them is :class:`~turn.client.TurnAllocation`'s business.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field

from stun import Address

from .. import errors
from ..channel import MAX_CHANNEL, MIN_CHANNEL


class Grant(enum.Enum):
    """Where the server stands on a lease."""

    PENDING = "requested"
    ACTIVE = "granted"
    FAILED = "failed"


@dataclass(slots=True)
class Lease:
    """Something the server grants for a while and the client refreshes: the allocation, a
    permission, a channel. ``handle`` is the request in flight for it, if any."""

    grant: Grant = Grant.PENDING
    expires_at: float = math.inf
    refresh_at: float = math.inf
    handle: int | None = None

    def granted(self, now: float, lifetime: float, margin: float) -> None:
        self.grant = Grant.ACTIVE
        self.expires_at = now + lifetime
        self.refresh_at = self.expires_at - min(margin, lifetime / 5)

    @property
    def deadline(self) -> float:
        """The refresh time, or while a request is in flight, the expiry."""
        if self.grant is not Grant.ACTIVE:
            return math.inf
        return self.expires_at if self.handle is not None else self.refresh_at


@dataclass(slots=True, kw_only=True)
class Permission(Lease):
    #: XOR-PEER-ADDRESS sent: the first peer seen at this IP address (the port is ignored, §9).
    peer: Address
    #: Data for peers at this IP address, held until the permission is granted.
    queued: deque[tuple[bytes, Address]] = field(default_factory=deque)


@dataclass(slots=True, kw_only=True)
class Channel(Lease):
    number: int
    peer: Address


class PeerLeases:
    """The permissions and channels of one allocation, bounded, with their earliest deadline.

    A peer keeps its channel number for the life of the allocation; numbers are not reused.
    """

    __slots__ = ("_deadline", "_next_number", "by_number", "channels", "max_permissions",
                 "permissions")  # fmt: skip

    def __init__(self, max_permissions: int) -> None:
        self.max_permissions = max_permissions
        #: Permissions by peer IP address (held, asked for or failed).
        self.permissions: dict[str, Permission] = {}
        #: Channels by peer transport address, and the same by number.
        self.channels: dict[Address, Channel] = {}
        self.by_number: dict[int, Channel] = {}
        self._next_number = MIN_CHANNEL
        #: The earliest deadline of every permission and channel, ``None`` when it must be
        #: computed again (see :meth:`changed`).
        self._deadline: float | None = math.inf

    def permission(self, peer: Address) -> Permission:
        """A new permission for ``peer``'s IP address, not yet asked for."""
        permission = Permission(peer=peer)
        self.permissions[peer.host] = permission
        return permission

    def channel(self, peer: Address) -> Channel:
        """``peer``'s channel, numbered now unless it has one. Until the ChannelBind is answered
        the peer's IP address counts as having a permission requested: the bind installs one
        (§12.2), so data from the peer may arrive before the answer."""
        channel = self.channels.get(peer)
        if channel is None:
            channel = Channel(number=self._next_number, peer=peer)
            self._next_number += 1
            self.channels[peer] = channel
            self.by_number[channel.number] = channel
        if peer.host not in self.permissions:
            self.permission(peer)
        return channel

    @property
    def has_free_number(self) -> bool:
        """Whether a channel number is left for a new peer (0x4000-0x4FFF, §12)."""
        return self._next_number <= MAX_CHANNEL

    def has_room(self, host: str) -> bool:
        """Whether ``host`` has a permission or one more fits ``max_permissions``."""
        return host in self.permissions or len(self.permissions) < self.max_permissions

    def check_room(self, peer: Address) -> None:
        """Raise unless ``peer`` has a permission or one more fits ``max_permissions``."""
        if not self.has_room(peer.host):
            raise errors.LocalProtocolError(
                f"no permission for {peer.host}: {self.max_permissions} peers have one"
            )

    @property
    def queued(self) -> int:
        """Datagrams held, for every peer, until their permission is granted."""
        return sum(len(permission.queued) for permission in self.permissions.values())

    def changed(self) -> None:
        """A permission's or channel's deadline may have moved: compute the earliest again."""
        self._deadline = None

    def earliest(self) -> float:
        """The earliest deadline of every permission and channel (cached)."""
        deadline = self._deadline
        if deadline is None:
            leases = (*self.permissions.values(), *self.channels.values())
            deadline = self._deadline = min(
                (lease.deadline for lease in leases), default=math.inf
            )
        return deadline

    def clear(self) -> None:
        """Forget every permission, channel and queued datagram."""
        self.permissions.clear()
        self.channels.clear()
        self.by_number.clear()
        self.changed()
