"""What a TURN client holds for a while and keeps refreshing (RFC 8656): the allocation (§8), a
permission per peer IP address (§9) and a channel per peer transport address (§12); and
:class:`PeerLeases`, which asks for the permissions and channels of one allocation, refreshes
them and keeps them in its tables.

A :class:`Lease` is refreshed ``refresh_margin`` seconds before it ends, at most a fifth of its
lifetime; while a refresh is in flight its expiry is the deadline instead (:attr:`Lease.deadline`).
A permission or channel whose refresh fails, or is still unanswered at its expiry, ends at once;
a ChannelBind installs the peer's permission too (§12.2), and if it fails, the permission is asked
for alone (with ``auto_permission``) or fails with it. Data for a peer waits in its permission's
queue until the permission is granted. :class:`PeerLeases` finds a permission by IP address and a
channel by peer or by number in one lookup each, holds at most ``max_permissions`` permissions and
the 4096 channel numbers, and caches the earliest deadline of them all, so that a timer does not
walk the tables. It sends, emits and ends the allocation through what
:class:`~turn.client.TurnAllocation` hands it.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from stun import Address, Attribute, Message, Method, TransactionTimeout

from .. import errors
from ..attributes import ChannelNumber, XorPeerAddress
from ..channel import MAX_CHANNEL, MIN_CHANNEL
from ..events import (
    ChannelBound,
    ChannelFailed,
    Failure,
    PermissionCreated,
    PermissionFailed,
    TurnClientEvent,
)
from .config import TurnClientConfig

#: What to do with a request's success response, and with its failure (both at ``now``).
OnSuccess = Callable[[Message, float], None]
OnFailure = Callable[[Failure, float], None]
#: ``request(method, attributes, now, on_success, on_failure)`` sends a request on the
#: allocation and returns its handle.
SendRequest = Callable[[Method, list[Attribute], float, OnSuccess, OnFailure], int]


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


_LeaseT = TypeVar("_LeaseT", bound=Lease)


class PeerLeases:
    """The permissions and channels of one allocation (§9, §11, §12): asked for, refreshed and
    bounded, with their earliest deadline.

    ``request`` sends a request on the allocation, ``cancel`` forgets a lease's request in
    flight, ``gone`` ends the allocation if a failure says the server holds none (437; it says
    whether it did), ``transmit`` sends data to a peer, ``emit`` reports an event and ``drop``
    counts data dropped. A peer keeps its channel number for the life of the allocation; numbers
    are not reused.
    """

    __slots__ = ("_cancel", "_config", "_deadline", "_drop", "_emit", "_gone", "_next_number",
                 "_request", "_transmit", "by_number", "channels", "permissions")  # fmt: skip

    def __init__(
        self,
        config: TurnClientConfig,
        *,
        request: SendRequest,
        cancel: Callable[[Lease], None],
        gone: Callable[[str, Failure], bool],
        transmit: Callable[[bytes, Address], None],
        emit: Callable[[TurnClientEvent], None],
        drop: Callable[[str, int], None],
    ) -> None:
        self._config = config
        self._request = request
        self._cancel = cancel
        self._gone = gone
        self._transmit = transmit
        self._emit = emit
        self._drop = drop
        #: Permissions by peer IP address (held, asked for or failed).
        self.permissions: dict[str, Permission] = {}
        #: Channels by peer transport address, and the same by number.
        self.channels: dict[Address, Channel] = {}
        self.by_number: dict[int, Channel] = {}
        self._next_number = MIN_CHANNEL
        #: The earliest deadline of every permission and channel, ``None`` when it must be
        #: computed again (see :meth:`changed`).
        self._deadline: float | None = math.inf

    # ------------------------------------------------------------------ the tables

    def permission(self, peer: Address) -> Permission:
        """A new permission for ``peer``'s IP address, not yet asked for."""
        permission = Permission(peer=peer)
        self.permissions[peer.host] = permission
        return permission

    @property
    def has_free_number(self) -> bool:
        """Whether a channel number is left for a new peer (0x4000-0x4FFF, §12)."""
        return self._next_number <= MAX_CHANNEL

    def has_room(self, host: str) -> bool:
        """Whether ``host`` has a permission or one more fits ``max_permissions``."""
        return host in self.permissions or len(self.permissions) < self._config.max_permissions

    def check_room(self, peer: Address) -> None:
        """Raise unless ``peer`` has a permission or one more fits ``max_permissions``."""
        if not self.has_room(peer.host):
            raise errors.LocalProtocolError(
                f"no permission for {peer.host}: {self._config.max_permissions} peers have one"
            )

    def changed(self) -> None:
        """A permission's or channel's deadline may have moved: compute the earliest again."""
        self._deadline = None

    def earliest(self) -> float:
        """The earliest deadline of every permission and channel (cached)."""
        deadline = self._deadline
        if deadline is None:
            leases = (*self.permissions.values(), *self.channels.values())
            deadline = self._deadline = min((lease.deadline for lease in leases), default=math.inf)
        return deadline

    def tend(self, now: float) -> None:
        """Refresh what is due; end what is unanswered at its expiry. Called early, it does
        nothing and walks no table."""
        if now < self.earliest():
            return
        for permission in list(self.permissions.values()):
            self._tend(permission, now, self.request_permission, self._permission_failed)
        for channel in list(self.channels.values()):
            self._tend(channel, now, self._request_channel, self._bind_failed)
        self.changed()

    def end(self) -> None:
        """Stop every refresh and forget every permission, channel and queued datagram."""
        for lease in (*self.permissions.values(), *self.channels.values()):
            self._cancel(lease)
        queued = sum(len(permission.queued) for permission in self.permissions.values())
        if queued:
            self._drop("allocation ended", queued)
        self.permissions.clear()
        self.channels.clear()
        self.by_number.clear()
        self.changed()

    def _tend(
        self,
        lease: _LeaseT,
        now: float,
        renew: Callable[[_LeaseT, float], None],
        fail: Callable[[_LeaseT, Failure, float], None],
    ) -> None:
        """Refresh a granted lease that is due; end one whose refresh is unanswered at expiry."""
        if lease.grant is not Grant.ACTIVE or now < lease.deadline:
            return
        if lease.handle is None:
            renew(lease, now)
        else:
            self._cancel(lease)
            fail(lease, TransactionTimeout("it expired before its refresh was answered"), now)

    # ------------------------------------------------------------------ permissions (§9, §11)

    def request_permission(self, permission: Permission, now: float) -> None:
        """Send a CreatePermission for ``permission`` (again, if it failed)."""
        if permission.grant is Grant.FAILED:
            permission.grant = Grant.PENDING
        permission.handle = self._request(
            Method.CREATE_PERMISSION,
            [XorPeerAddress(permission.peer)],
            now,
            partial(self._permitted, permission),
            partial(self._permission_failed, permission),
        )

    def _permitted(self, permission: Permission, response: Message, now: float) -> None:
        permission.handle = None
        self._grant_permission(permission, now)

    def _grant_permission(self, permission: Permission, now: float) -> None:
        config = self._config
        first = permission.grant is not Grant.ACTIVE
        permission.granted(now, config.permission_lifetime, config.refresh_margin)
        if first:
            self._emit(PermissionCreated(permission.peer.host))
        while permission.queued:
            self._transmit(*permission.queued.popleft())

    def _permission_failed(self, permission: Permission, error: Failure, now: float) -> None:
        permission.handle = None
        if self._gone("CreatePermission", error):
            return
        permission.grant = Grant.FAILED
        if permission.queued:
            self._drop("permission failed", len(permission.queued))
            permission.queued.clear()
        self._emit(PermissionFailed(permission.peer.host, error))

    # ------------------------------------------------------------------ channels (§12)

    def bind(self, peer: Address, now: float) -> Channel:
        """Send a ChannelBind for ``peer``, on a new number unless it had one. Until it is
        answered the peer's IP address counts as having a permission requested: the bind
        installs one (§12.2), so data from the peer may arrive before the answer."""
        channel = self.channels.get(peer)
        if channel is None:
            channel = Channel(number=self._next_number, peer=peer)
            self._next_number += 1
            self.channels[peer] = channel
            self.by_number[channel.number] = channel
        if peer.host not in self.permissions:
            self.permission(peer)
        self._request_channel(channel, now)
        return channel

    def _request_channel(self, channel: Channel, now: float) -> None:
        if channel.grant is Grant.FAILED:
            channel.grant = Grant.PENDING
        channel.handle = self._request(
            Method.CHANNEL_BIND,
            [ChannelNumber(channel.number), XorPeerAddress(channel.peer)],
            now,
            partial(self._bound, channel),
            partial(self._bind_failed, channel),
        )

    def _bound(self, channel: Channel, response: Message, now: float) -> None:
        channel.handle = None
        config = self._config
        first = channel.grant is not Grant.ACTIVE
        channel.granted(now, config.channel_lifetime, config.refresh_margin)
        permission = self.permissions.get(channel.peer.host) or self.permission(channel.peer)
        if first:
            self._emit(ChannelBound(channel.peer, channel.number))
        self._grant_permission(permission, now)

    def _bind_failed(self, channel: Channel, error: Failure, now: float) -> None:
        channel.handle = None
        if self._gone("ChannelBind", error):
            return
        channel.grant = Grant.FAILED
        self._emit(ChannelFailed(channel.peer, channel.number, error))
        permission = self.permissions.get(channel.peer.host)
        if (
            permission is None
            or permission.grant is not Grant.PENDING
            or permission.handle is not None
        ):
            return
        # The permission was to come with the channel: ask for it alone, or give up on it.
        if self._config.auto_permission:
            self.request_permission(permission, now)
        else:
            self._permission_failed(permission, error, now)
