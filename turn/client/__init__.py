"""The sans-IO TURN client: one allocation on one TURN server (RFC 8656).

:class:`TurnAllocation` is the machine (:mod:`turn.client.allocation`, whose docstring is the
theory of operation), configured by :class:`TurnClientConfig` (:mod:`turn.client.config`). It
keeps the allocation's permissions and channels, and their deadlines, in
:mod:`turn.client.leases`, and wraps data for the server and unwraps what comes back with
:mod:`turn.client.data`.
"""

from .allocate import LONGEST_LIFETIME
from .allocation import AllocationState, TurnAllocation
from .config import TurnClientConfig
from .data import MAX_SEND_SIZE

__all__ = [
    "LONGEST_LIFETIME",
    "MAX_SEND_SIZE",
    "AllocationState",
    "TurnAllocation",
    "TurnClientConfig",
]
