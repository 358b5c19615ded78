"""Client transactions on a virtual clock: the exact RFC 8489 §6.2 schedule and RTO estimation."""

from __future__ import annotations

import pytest

from stun.errors import LocalProtocolError
from stun.transaction import ClientTransaction, RtoCache, TransactionConfig, TransactionState

TID = bytes(12)


def run_to_end(transaction: ClientTransaction) -> tuple[list[float], float]:
    """Drive a transaction by its own timer; return the send times and when it ended."""
    sends = [transaction.started_at]
    now = transaction.started_at
    while (deadline := transaction.get_timer()) is not None:
        now = deadline
        if transaction.handle_timer(now) is not None:
            sends.append(now)
    return sends, now


def test_udp_schedule_is_the_rfc_example() -> None:
    transaction = ClientTransaction(b"req", TID, now=0.0, rto=0.5)
    sends, ended = run_to_end(transaction)
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert ended == 39.5
    assert transaction.state is TransactionState.TIMED_OUT
    assert transaction.requests_sent == 7


def test_schedule_follows_configured_rc_rm_and_start_time() -> None:
    config = TransactionConfig(max_requests=3, final_wait=4)
    transaction = ClientTransaction(b"req", TID, now=10.0, rto=0.1, config=config)
    sends, ended = run_to_end(transaction)
    assert sends == pytest.approx([10.0, 10.1, 10.3])
    assert ended == pytest.approx(10.7)


def test_single_request_waits_rm_times_rto() -> None:
    config = TransactionConfig(max_requests=1, final_wait=16)
    transaction = ClientTransaction(b"req", TID, now=0.0, rto=0.5, config=config)
    sends, ended = run_to_end(transaction)
    assert sends == [0.0]
    assert ended == 8.0


def test_reliable_transport_never_retransmits_and_times_out_at_ti() -> None:
    transaction = ClientTransaction(b"req", TID, now=2.0, rto=0.5, reliable=True)
    sends, ended = run_to_end(transaction)
    assert sends == [2.0]
    assert ended == 41.5


def test_early_timer_call_does_nothing_and_late_call_reschedules_from_now() -> None:
    transaction = ClientTransaction(b"req", TID, now=0.0, rto=0.5)
    assert transaction.handle_timer(0.49) is None
    assert transaction.get_timer() == 0.5
    assert transaction.handle_timer(0.8) == b"req"
    assert transaction.get_timer() == pytest.approx(1.8)


def test_answered_reports_rtt_and_stops_the_timer() -> None:
    transaction = ClientTransaction(b"req", TID, now=1.0, rto=0.5)
    assert transaction.answered(1.25) == pytest.approx(0.25)
    assert transaction.get_timer() is None
    assert not transaction.retransmitted
    with pytest.raises(LocalProtocolError):
        transaction.answered(1.3)


def test_rto_cache_starts_at_initial_and_follows_rfc6298() -> None:
    cache = RtoCache()
    assert cache.rto("192.0.2.1", 0.0) == 0.5
    cache.add_sample("192.0.2.1", 0.2, now=1.0)
    # First sample: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR.
    assert cache.rto("192.0.2.1", 1.0) == pytest.approx(0.2 + 4 * 0.1)
    cache.add_sample("192.0.2.1", 0.2, now=2.0)
    # RTTVAR = 3/4*0.1 + 1/4*0 = 0.075; SRTT stays 0.2.
    assert cache.rto("192.0.2.1", 2.0) == pytest.approx(0.2 + 4 * 0.075)
    assert cache.rto("198.51.100.1", 2.0) == 0.5


def test_rto_cache_goes_stale_after_ten_minutes() -> None:
    cache = RtoCache()
    cache.add_sample("192.0.2.1", 2.0, now=0.0)
    assert cache.rto("192.0.2.1", 600.0) == pytest.approx(6.0)
    assert cache.rto("192.0.2.1", 600.5) == 0.5
    assert len(cache) == 0


def test_rto_cache_is_clamped_and_bounded() -> None:
    config = TransactionConfig(min_rto=0.1, max_rto=3.0, rto_cache_size=4)
    cache = RtoCache(config)
    cache.add_sample("192.0.2.1", 0.0001, now=0.0)
    assert cache.rto("192.0.2.1", 0.0) == 0.1
    cache.add_sample("192.0.2.2", 10.0, now=0.0)
    assert cache.rto("192.0.2.2", 0.0) == 3.0
    for i in range(100):
        cache.add_sample(f"192.0.2.{10 + i}", 0.05, now=float(i))
    assert len(cache) == 4


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_rto": 0}, {"max_requests": 0}, {"final_wait": 0}, {"min_rto": 2, "max_rto": 1}],
)
def test_config_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        TransactionConfig(**kwargs)  # type: ignore[arg-type]
