"""Opt-in probes of public STUN servers on the internet (marker ``public``).

Skipped unless ``ICESTACK_PUBLIC_STUN=1``: the rest of the suite talks to loopback only. Run with
``ICESTACK_PUBLIC_STUN=1 pytest -m public tests/net/test_public_stun.py``.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from stun.aio import Transport, binding
from stun.client import BindingResult

from .loopback import run

pytestmark = [
    pytest.mark.public,
    pytest.mark.skipif(
        os.environ.get("ICESTACK_PUBLIC_STUN") != "1",
        reason="probes public STUN servers on the internet; set ICESTACK_PUBLIC_STUN=1 to run",
    ),
]

#: Servers and the transports they are known to serve (Google's answers UDP only).
PUBLIC_SERVERS = [
    pytest.param("stun.l.google.com", 19302, "udp", id="google-udp"),
    pytest.param("stun.cloudflare.com", 3478, "udp", id="cloudflare-udp"),
    pytest.param("stun.cloudflare.com", 3478, "tcp", id="cloudflare-tcp"),
]


@pytest.mark.parametrize(("host", "port", "transport"), PUBLIC_SERVERS)
def test_public_server_reports_our_reflexive_address(
    host: str, port: int, transport: Transport
) -> None:
    result: BindingResult = run(
        binding(host, port, transport=transport, family=socket.AF_INET), timeout=45
    )
    assert result.server.port == port
    assert result.mapped_address is not None
    assert ipaddress.ip_address(result.mapped_address.host).version == 4
    assert 0 < result.mapped_address.port <= 65535
    assert result.rtt >= 0
    assert "XOR-MAPPED-ADDRESS (RFC 5389/8489)" in result.features
