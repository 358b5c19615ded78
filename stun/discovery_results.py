"""What NAT behaviour discovery finds (RFC 5780 §4): verdicts with their evidence, or the reason
there is none; and the configuration of :class:`stun.discovery.NatDiscovery`.

Each behaviour is a :class:`Finding`: a verdict, the evidence that led to it (which test went
where and what came back), and, when the verdict is ``None``, why it could not be determined.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._version import DEFAULT_SOFTWARE
from .address import Address
from .errors import LocalProtocolError
from .events import StunEvent
from .transaction import TransactionConfig

T = TypeVar("T")


class Behavior(enum.Enum):
    """A NAT's mapping (RFC 4787 §4.1) or filtering (§5) behaviour; the value is what
    ``icestack nat --json`` prints."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


@dataclass(frozen=True, slots=True)
class Lifetime:
    """What the binding-lifetime test (RFC 5780 §4.6) measured: the mapping was still there
    ``alive_after`` seconds after its last outbound packet, and gone ``expired_after`` seconds
    after (``None``: it outlived the longest wait tried)."""

    alive_after: float
    expired_after: float | None


@dataclass(frozen=True, slots=True)
class Finding(Generic[T]):
    """One behaviour's verdict (``None``: undetermined, and ``reason`` says why) and the
    evidence, one line per test."""

    verdict: T | None
    reason: str | None = None
    evidence: tuple[str, ...] = ()


def undetermined(reason: str, evidence: tuple[str, ...] = ()) -> Finding[T]:
    """A finding without a verdict."""
    return Finding(None, reason, evidence)


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    """Everything one discovery run learnt about the path to a server (RFC 5780 §4).

    ``nat`` is ``False`` when the mapped address is the local one (no NAT on the path), ``None``
    when test I got no answer; ``lifetime`` is ``None`` when it was not asked for.
    """

    server: Address
    transport: str
    local: Address | None
    mapped_address: Address | None
    other_address: Address | None
    response_origin: Address | None
    software: str | None
    nat: bool | None
    mapping: Finding[Behavior]
    filtering: Finding[Behavior]
    hairpinning: Finding[bool]
    lifetime: Finding[Lifetime] | None


@dataclass(frozen=True, slots=True)
class DiscoveryProgressed(StunEvent):
    """A test started, or a lifetime wait began: one line for a progress display."""

    message: str


@dataclass(frozen=True, slots=True)
class DiscoveryFinished(StunEvent):
    """The discovery ended; ``result`` is also :attr:`NatDiscovery.result`."""

    result: DiscoveryResult


#: Requests per test over UDP, and the final wait in RTOs: a few retransmissions, then give up.
_SENDS = 3
_FINAL_WAIT = 4


@dataclass(frozen=True, kw_only=True, slots=True)
class DiscoveryConfig:
    """How long each test waits, and what the run includes.

    Behaviour tests *expect* some requests to go unanswered (that is how filtering is measured),
    so each test has a short ``test_timeout`` with a few retransmissions instead of the 39.5 s
    schedule of a transaction: over UDP the request goes out three times and the test gives up
    ``test_timeout`` seconds after the first; over TCP it is the connection's whole wait.
    """

    test_timeout: float = 2.0
    #: Run the binding-lifetime test (§4.6): a binary search over waits of up to
    #: ``lifetime_max`` seconds, stopping when the bracket is ``lifetime_resolution`` wide.
    lifetime: bool = False
    lifetime_max: float = 180.0
    lifetime_resolution: float = 5.0
    #: Send the hairpinning test (§4.5).
    hairpinning: bool = True
    #: Over TCP: the mapping test only, one connection per test (no CHANGE-REQUEST, §7.2).
    reliable: bool = False
    #: SOFTWARE sent with each request (RFC 8489 §6.1: SHOULD); ``None`` sends none.
    software: str | None = DEFAULT_SOFTWARE

    def __post_init__(self) -> None:
        if not 0 < self.test_timeout < float("inf"):
            raise LocalProtocolError("test_timeout must be a positive number of seconds")
        if not 0 < self.lifetime_resolution < self.lifetime_max < float("inf"):
            raise LocalProtocolError("need 0 < lifetime_resolution < lifetime_max")

    @property
    def transaction(self) -> TransactionConfig:
        """The schedule of one test's request (RFC 8489 §6.2, shrunk to ``test_timeout``)."""
        rtos = 2 ** (_SENDS - 1) - 1 + _FINAL_WAIT
        return TransactionConfig(
            initial_rto=self.test_timeout / rtos,
            max_requests=_SENDS,
            final_wait=_FINAL_WAIT,
            reliable_timeout=self.test_timeout,
            min_rto=min(0.1, self.test_timeout / rtos),
        )
