"""``aioice.stun`` as seen through :mod:`ice.compat.aioice`: the retransmission knobs of
connectivity checks.

aioice retransmits a request ``RETRY_MAX`` times, waiting ``RETRY_RTO`` seconds after the
first send and doubling each time. Left at these values, icestack keeps RFC 8489's schedule
(:class:`stun.transaction.TransactionConfig`: 7 requests from a 500 ms RTO, the last one awaited
16 RTOs). Changed before a ``Connection`` is made, they become its checks' schedule:
``RETRY_MAX + 1`` requests from an RTO of ``RETRY_RTO``, the last one awaited ``2**RETRY_MAX``
RTOs, as aioice does (:func:`ice.compat.aioice.ice.agent_config`).
"""

from __future__ import annotations

RETRY_MAX = 6
RETRY_RTO = 0.5
