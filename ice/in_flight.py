"""The checks an agent has in flight, by transaction ID, counting those that are not consent
checks (RFC 8445 §6.1.4, RFC 7675).

Whether an ordinary check (not a consent check) is in flight decides, after every datagram and
timer, whether the agent is idle or completed (:mod:`ice.selection`): a walk over the checks
each time would cost calls per check, so the table counts them as they come and go.
"""

from __future__ import annotations

from typing import Protocol, TypeVar


class _Check(Protocol):
    @property
    def consent(self) -> bool: ...


_C = TypeVar("_C", bound=_Check)


class ChecksInFlight(dict[bytes, _C]):
    """A dict of checks by transaction ID that keeps :attr:`ordinary`, the number of checks in
    it that are not consent checks. Only item assignment, ``del``, :meth:`pop` and
    :meth:`clear` change it (the other dict methods that write are refused)."""

    __slots__ = ("ordinary",)

    def __init__(self) -> None:
        super().__init__()
        self.ordinary = 0

    # (dict's methods are named, not reached through super(), which makes an object per call:
    # these run for every check sent and answered.)
    def __setitem__(self, transaction_id: bytes, check: _C) -> None:
        if transaction_id in self and not self[transaction_id].consent:
            self.ordinary -= 1
        dict.__setitem__(self, transaction_id, check)
        if not check.consent:
            self.ordinary += 1

    def __delitem__(self, transaction_id: bytes) -> None:
        if not self[transaction_id].consent:
            self.ordinary -= 1
        dict.__delitem__(self, transaction_id)

    def pop(self, transaction_id: bytes, *default: _C | None) -> _C | None:  # type: ignore[override]
        check = dict.pop(self, transaction_id, *default)
        if check is not None and not check.consent:
            self.ordinary -= 1
        return check

    def clear(self) -> None:
        super().clear()
        self.ordinary = 0

    def keep_consent_checks(self) -> None:
        """Forget every ordinary check (an ICE restart, §9); consent checks go on."""
        for transaction_id in [t for t, check in self.items() if not check.consent]:
            del self[transaction_id]

    def _refused(self, *args: object, **kwargs: object) -> None:
        raise TypeError("ChecksInFlight changes only by item, del, pop and clear")

    setdefault = update = popitem = __ior__ = _refused  # type: ignore[assignment]
