"""Opt-in probes of public STUN servers on the internet (marker ``public``).

Skipped unless ``ICESTACK_PUBLIC_STUN=1``: the rest of the suite talks to loopback only. Run with
``ICESTACK_PUBLIC_STUN=1 pytest -m public tests/net/test_public_stun.py``. Offline — no DNS, no
route, no answer — each probe is skipped with the reason rather than failed: what fails then is
the network, not icestack (``tests/net/test_offline.py`` checks that this is so).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

import pytest

from stun import LocalProtocolError, TransactionTimeout
from stun.aio import Transport, binding
from stun.aio_discovery import discover_nat
from stun.client import BindingResult
from stun.discovery_results import DiscoveryConfig
from stun.public_servers import PUBLIC_SERVERS as LISTED

from .loopback import run

pytestmark = [
    pytest.mark.public,
    pytest.mark.skipif(
        os.environ.get("ICESTACK_PUBLIC_STUN") != "1",
        reason="probes public STUN servers on the internet; set ICESTACK_PUBLIC_STUN=1 to run",
    ),
]

#: The built-in list of ``icestack stun --public`` (stun.public_servers), each server over every
#: transport it is known to serve.
PUBLIC_SERVERS = [
    pytest.param(entry.host, entry.port, transport, id=f"{entry.name}-{transport}")
    for entry in LISTED
    for transport in entry.transports
]
#: The listed servers that say they do RFC 5780 behaviour discovery.
RFC5780_SERVERS = [
    pytest.param(entry.host, entry.port, id=entry.name) for entry in LISTED if entry.rfc5780
]
#: What an unreachable network looks like to a socket.
UNREACHABLE = frozenset((errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ECONNREFUSED))
#: The skip reasons start with this (tests/net/test_offline.py looks for it).
OFFLINE = "the network is unreachable"


def probe(host: str, port: int, transport: Transport) -> BindingResult:
    """One Binding transaction with the server, or a skip saying why the network failed it."""
    try:
        result: BindingResult = run(
            binding(host, port, transport=transport, family=socket.AF_INET), timeout=45
        )
    except LocalProtocolError as exc:  # the name did not resolve
        pytest.skip(f"{OFFLINE}: {exc}")
    except TransactionTimeout as exc:
        pytest.skip(f"{OFFLINE}: {exc} (offline, or UDP is filtered here)")
    except TimeoutError:
        pytest.skip(f"{OFFLINE}: no answer to connecting to {host}:{port} over {transport}")
    except OSError as exc:
        if exc.errno not in UNREACHABLE:
            raise
        pytest.skip(f"{OFFLINE}: {host}:{port} over {transport}: {exc.strerror}")
    return result


@pytest.mark.parametrize(("host", "port", "transport"), PUBLIC_SERVERS)
def test_public_server_reports_our_reflexive_address(
    host: str, port: int, transport: Transport
) -> None:
    result = probe(host, port, transport)
    assert result.server.port == port
    assert result.mapped_address is not None
    assert ipaddress.ip_address(result.mapped_address.host).version == 4
    assert 0 < result.mapped_address.port <= 65535
    assert result.rtt >= 0
    assert "XOR-MAPPED-ADDRESS (RFC 5389/8489)" in result.features


@pytest.mark.parametrize(("host", "port"), RFC5780_SERVERS)
def test_rfc5780_server_gives_mapping_and_filtering_verdicts(host: str, port: int) -> None:
    result = probe(host, port, "udp")  # skips, saying why, when offline
    if result.other_address is None:
        pytest.skip(f"{host}:{port} sent no OTHER-ADDRESS today: it does not do RFC 5780 now")
    found = run(
        discover_nat(host, port, config=DiscoveryConfig(), family=socket.AF_INET), timeout=60
    )
    assert found.mapped_address is not None
    assert found.mapping.verdict is not None, found.mapping.reason
    assert found.filtering.verdict is not None, found.filtering.reason
