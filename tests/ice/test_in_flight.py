"""ice.in_flight.ChecksInFlight, with real checks: the count of ordinary checks follows every
way the table changes, and the ways that would bypass the count are refused."""

from __future__ import annotations

import pytest

from ice.check_codec import CheckTemplate
from ice.in_flight import ChecksInFlight
from ice.outgoing import Check
from stun.transaction import ClientTransaction

from .test_consent import make_pair


def check(consent: bool) -> Check:
    """A check in flight of one pair: an ordinary one, or a consent check (RFC 7675)."""
    transaction = ClientTransaction(b"request", bytes(12), now=0.0, rto=0.5)
    template = CheckTemplate("r", "l", "pwd", True, 0)
    return Check(make_pair(9), transaction, False, True, consent, template, False)


def test_the_count_follows_assignment_del_pop_clear_and_a_restart() -> None:
    table: ChecksInFlight[Check] = ChecksInFlight()
    table[b"a"] = check(consent=False)
    table[b"b"] = check(consent=True)
    table[b"c"] = check(consent=False)
    assert table.ordinary == 2
    table[b"c"] = check(consent=True)  # the same transaction ID again: replaced, not added
    assert table.ordinary == 1
    assert table.pop(b"missing", None) is None
    assert table.pop(b"a", None) is not None
    assert table.ordinary == 0
    table[b"d"] = check(consent=False)
    table.keep_consent_checks()
    assert (sorted(table), table.ordinary) == ([b"b", b"c"], 0)
    del table[b"b"]
    table[b"e"] = check(consent=False)
    table.clear()
    assert (len(table), table.ordinary) == (0, 0)


@pytest.mark.parametrize("method", ["setdefault", "update", "popitem"])
def test_writes_that_would_bypass_the_count_are_refused(method: str) -> None:
    table: ChecksInFlight[Check] = ChecksInFlight()
    with pytest.raises(TypeError, match="changes only by"):
        getattr(table, method)({b"a": check(consent=False)})
    with pytest.raises(TypeError, match="changes only by"):
        table |= {b"a": check(consent=False)}  # type: ignore[misc]
    assert (len(table), table.ordinary) == (0, 0)
