"""The special-purpose ranges the TURN peer policy refuses (turn.server.special_purpose), row by row
against the IANA registries as transcribed in rfc_vectors/iana_special_purpose.json, and against
Python's ``ipaddress.is_global`` as a second opinion."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turn.server import DOCUMENTATION_RANGES, SPECIAL_RANGES, PeerPolicy, Reach
from turn.server.special_purpose import IANA_IPV4, IANA_IPV6, REGISTRY_RANGES, RangeTable

REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTRY: dict[str, Any] = json.loads(
    (REPO_ROOT / "rfc_vectors" / "iana_special_purpose.json").read_text(encoding="utf-8")
)
#: (block, name, rfc, Globally Reachable) for every block of both registries, from the JSON.
ROWS = [
    (block, row["name"], row["rfc"], row["globally_reachable"])
    for family in ("ipv4", "ipv6")
    for row in REGISTRY[family]
    for block in row["blocks"]
]
#: Blocks whose addresses carry IPv4 addresses and are judged by them (test_server_policy.py).
CARRYING = [ipaddress.ip_network(c) for c in ("64:ff9b::/96", "2002::/16", "2001::/32")]
#: Ranges the policy refuses beyond the registries, with why.
OTHER_REFUSED = {
    "224.0.0.0/4": "Multicast (RFC 5771)",
    "ff00::/8": "Multicast (RFC 4291 §2.7)",
    "fec0::/10": "Site-Local, deprecated (RFC 3879)",
    "::/96": "IPv4-compatible Address, deprecated (RFC 4291 §2.5.5.1)",
    "::/3": "Outside global unicast 2000::/3 (RFC 4291 §2.4)",
    "4000::/2": "Outside global unicast 2000::/3 (RFC 4291 §2.4)",
    "8000::/1": "Outside global unicast 2000::/3 (RFC 4291 §2.4)",
}


def test_the_code_holds_every_registry_row_as_transcribed() -> None:
    in_code = [(str(row.network), row.name, row.rfc, row.reach.value) for row in REGISTRY_RANGES]
    assert in_code == ROWS
    assert {row.registry for row in REGISTRY_RANGES} == {IANA_IPV4, IANA_IPV6}
    assert len(REGISTRY["ipv4"]) == 25 and len(REGISTRY["ipv6"]) == 25  # as IANA lists them


def test_the_other_ranges_are_the_documented_ones() -> None:
    others = {str(r.network): f"{r.name} ({r.rfc})" for r in SPECIAL_RANGES[len(ROWS) :]}
    assert others == OTHER_REFUSED


def _expected(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, str] | None:
    """The most specific row holding ``ip`` by a plain scan of the JSON rows and the other
    ranges: (name and RFC, Globally Reachable)."""
    rows = [(b, f"{n} ({r})", reach) for b, n, r, reach in ROWS] + [
        (b, why, "False") for b, why in OTHER_REFUSED.items()
    ]
    holding = [
        (ipaddress.ip_network(b), why, reach)
        for b, why, reach in rows
        if ip.version == ipaddress.ip_network(b).version and ip in ipaddress.ip_network(b)
    ]
    if not holding:
        return None
    _, why, reach = max(holding, key=lambda row: row[0].prefixlen)
    return why, reach


def _samples(block: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The first, second, middle and last addresses of a block, less those that carry IPv4."""
    network = ipaddress.ip_network(block)
    first = int(network.network_address)
    picks = {first, first + min(1, network.num_addresses - 1), first + network.num_addresses // 2}
    picks.add(int(network.broadcast_address))
    kind = type(network.network_address)
    addresses = [kind(value) for value in sorted(picks)]
    return [a for a in addresses if not any(a in carrying for carrying in CARRYING)]


SAMPLES = sorted(
    {a for block, *_ in ROWS for a in _samples(block)}
    | {a for block in OTHER_REFUSED for a in _samples(block)},
    key=lambda a: (a.version, int(a)),
)


@pytest.mark.parametrize("address", SAMPLES, ids=str)
def test_every_row_refused_unless_globally_reachable(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    """Row by row: inside a row whose Globally Reachable is not True (False, or empty for a
    terminated one), refused with that row's name; inside a True row, allowed."""
    expected = _expected(address)
    assert expected is not None
    why, reach = expected
    refusal = PeerPolicy().refusal(str(address))
    if reach == "True":
        assert refusal is None
    else:
        assert refusal == f"{why}: not globally reachable"


def test_the_samples_cover_every_row_and_both_verdicts() -> None:
    covered = {
        block
        for block, *_ in [*ROWS, *((b, "", "", "") for b in OTHER_REFUSED)]
        for address in SAMPLES
        if address in ipaddress.ip_network(block)
    }
    assert covered == ({block for block, *_ in ROWS} | set(OTHER_REFUSED)) - {
        str(network) for network in CARRYING
    }
    verdicts = {PeerPolicy().refusal(str(address)) is None for address in SAMPLES}
    assert verdicts == {True, False}


@pytest.mark.parametrize(
    "host",
    [
        # positive controls: addresses of real public services, outside every special range
        "8.8.8.8", "1.1.1.1", "9.9.9.9", "2001:4860:4860::8888", "2606:4700:4700::1111",
        # rows the registries call globally reachable
        "192.0.0.9", "192.0.0.10", "192.31.196.1", "192.52.193.1", "192.175.48.6",
        "2001:1::1", "2001:1::2", "2001:1::3", "2001:3::1", "2001:4:112::1", "2001:20::1",
        "2001:30::1", "2620:4f:8000::1",
    ],
)  # fmt: skip
def test_globally_reachable_addresses_are_allowed(host: str) -> None:
    assert PeerPolicy().refusal(host) is None


def test_documentation_ranges_are_refused_unless_allowed() -> None:
    assert [str(n) for n in DOCUMENTATION_RANGES] == [
        "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20",
    ]  # fmt: skip
    for network in DOCUMENTATION_RANGES:
        host = str(network.network_address + 9)
        assert PeerPolicy().refusal(host) is not None
        assert PeerPolicy(allow_documentation_peers=True).refusal(host) is None


def _inside_a_block(block: str) -> st.SearchStrategy[int]:
    network = ipaddress.ip_network(block)
    return st.integers(int(network.network_address), int(network.broadcast_address))


@settings(max_examples=2000)
@given(
    st.one_of(
        st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
        st.sampled_from([b for b, *_ in ROWS if "." in b])
        .flatmap(_inside_a_block)
        .map(ipaddress.IPv4Address),
        st.sampled_from([b for b, *_ in ROWS if ":" in b])
        .flatmap(_inside_a_block)
        .map(ipaddress.IPv6Address),
    )
)
def test_what_is_global_calls_not_global_is_refused_or_in_a_reachable_row(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    """Python's ``is_global`` reads the same registries, but its tables lag them and differ
    between Python versions: it calls multicast and 192.88.99.0/24 global, some versions the
    whole 192.0.0.0/24, and new rows (3fff::/20, 5f00::/16, 100:0:0:1::/64) global; other
    versions miss the globally reachable rows inside 2001::/23. So only this holds for every
    version: what it calls not global, we refuse, unless the registry says reachable."""
    if address.is_global or any(address in carrying for carrying in CARRYING):
        return
    if PeerPolicy().refusal(str(address)) is None:
        expected = _expected(address)
        assert expected is not None and expected[1] == "True"


def test_the_lookup_finds_the_most_specific_row() -> None:
    table = RangeTable(SPECIAL_RANGES)
    for address in SAMPLES:
        row = table.most_specific(address)
        expected = _expected(address)
        assert row is not None and expected is not None
        assert (f"{row.name} ({row.rfc})", row.reach.value) == expected
    assert table.most_specific(ipaddress.ip_address("8.8.8.8")) is None
    carried = table.most_specific(ipaddress.ip_address("2002::1"))
    assert carried is not None and carried.reach is Reach.CARRIED


def test_a_range_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        RangeTable([SPECIAL_RANGES[0], SPECIAL_RANGES[0]])


def test_docs_list_every_range_as_the_code_judges_it() -> None:
    """docs/turn.md's tables of the peer policy: every range of the code, in its order, and for
    the registries' rows the registry's value and the verdict."""
    text = (REPO_ROOT / "docs" / "turn.md").read_text(encoding="utf-8")
    section = text.split("## The peer policy", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    assert [cells[0].strip("`") for cells in rows] == [str(r.network) for r in SPECIAL_RANGES]
    carried = "by the IPv4 it carries"
    verdicts = {"True": "allowed", "False": "refused", "": "refused", "N/A": carried}
    for row, cells in zip(REGISTRY_RANGES, rows, strict=False):
        assert cells[4] == (carried if row.network in CARRYING else verdicts[row.reach.value])
