"""ice.mdns_cache: what our resolver keeps from responses and announcements — TTLs (capped),
goodbyes, cache-flush, and bounds that no flood of names or addresses passes (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ice import LocalProtocolError
from ice.dns import AddressRecord, DnsMessage, NsecRecord, RecordType
from ice.mdns_cache import MAX_ADDRESSES_PER_NAME, AddressCache

NAME = "0b5a7c1e-0000-4000-8000-000000000000.local"


def announced(*records: AddressRecord | NsecRecord, additional: bool = False) -> DnsMessage:
    if additional:
        return DnsMessage(response=True, additionals=records)
    return DnsMessage(response=True, answers=records)


def test_an_address_lives_for_its_ttl() -> None:
    cache = AddressCache()
    learnt = cache.add(announced(AddressRecord(NAME.upper(), "192.0.2.1", ttl=10)), now=100.0)
    assert learnt == {NAME}
    assert cache.lookup(NAME + ".", 109.9) == "192.0.2.1"
    assert cache.lookup(NAME, 110.0) is None and len(cache) == 0


def test_additional_records_count_and_nsec_records_are_not_addresses() -> None:
    cache = AddressCache()
    nsec = NsecRecord(NAME, NAME, frozenset({RecordType.AAAA}))
    assert cache.add(announced(nsec), 0.0) == set()
    assert cache.add(announced(AddressRecord(NAME, "2001:db8::1"), additional=True), 0.0) == {NAME}
    assert cache.lookup(NAME, 1.0) == "2001:db8::1"


def test_a_long_ttl_is_capped() -> None:
    cache = AddressCache(max_ttl=120.0)
    cache.add(announced(AddressRecord(NAME, "192.0.2.1", ttl=2**32 - 1)), 0.0)
    assert cache.lookup(NAME, 119.0) == "192.0.2.1" and cache.lookup(NAME, 120.0) is None


def test_goodbye_removes_the_address() -> None:
    cache = AddressCache()
    cache.add(announced(AddressRecord(NAME, "192.0.2.1"), AddressRecord(NAME, "2001:db8::1")), 0.0)
    assert cache.add(announced(AddressRecord(NAME, "192.0.2.1", ttl=0)), 1.0) == set()
    assert cache.lookup(NAME, 2.0) == "2001:db8::1"
    cache.add(announced(AddressRecord(NAME, "2001:db8::1", ttl=0)), 3.0)
    assert cache.lookup(NAME, 3.0) is None


def test_cache_flush_replaces_the_addresses_of_its_family() -> None:
    cache = AddressCache()
    old = (AddressRecord(NAME, "192.0.2.1"), AddressRecord(NAME, "2001:db8::1"))
    cache.add(announced(*old), 0.0)
    cache.add(announced(AddressRecord(NAME, "192.0.2.2", cache_flush=True)), 1.0)
    cache.add(announced(AddressRecord(NAME, "2001:db8::1", ttl=0)), 1.0)
    assert cache.lookup(NAME, 2.0) == "192.0.2.2"


def test_names_and_addresses_are_bounded() -> None:
    cache = AddressCache(max_names=3)
    for index in range(5):
        cache.add(announced(AddressRecord(f"n{index}.local", "192.0.2.1")), float(index))
    assert len(cache) == 3
    assert cache.lookup("n0.local", 5.0) is None and cache.lookup("n1.local", 5.0) is None
    assert cache.lookup("n4.local", 5.0) == "192.0.2.1"
    flood = [AddressRecord(NAME, f"192.0.2.{i}") for i in range(1, 20)]
    cache.add(announced(*flood), 5.0)
    assert cache.lookup(NAME, 5.0) == "192.0.2.1"
    assert len(cache.addresses(NAME, 5.0)) == MAX_ADDRESSES_PER_NAME


def test_a_cache_needs_room() -> None:
    with pytest.raises(LocalProtocolError):
        AddressCache(max_names=0)


addresses = st.ip_addresses().map(str)
names = st.integers(0, 300).map(lambda n: f"n{n}.local")
records = st.builds(AddressRecord, names, addresses, st.integers(0, 2**32 - 1), st.booleans())


@given(st.lists(st.lists(records, max_size=30), max_size=20))
def test_no_flood_of_responses_passes_the_bounds(messages: list[list[AddressRecord]]) -> None:
    cache = AddressCache(max_names=16)
    for now, message in enumerate(messages):
        for name in cache.add(announced(*message), float(now)):
            assert 1 <= len(cache.addresses(name, float(now))) <= MAX_ADDRESSES_PER_NAME
        assert len(cache) <= 16
