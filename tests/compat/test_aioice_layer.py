"""``ice.compat.aioice``: installing it as the ``aioice`` modules (and refusing after the real
aioice), aioice's Candidate, the timer knobs, and the Connection API aiortc uses.

Installing the layer changes :data:`sys.modules`, and other tests use the real aioice in this
process: what must see a fresh interpreter runs in a subprocess, the rest installs the layer
for one test only (:func:`compat`) and puts the real modules back afterwards. Connections
gather on 127.0.0.1 only (the layer, like aioice, has no option for it: the test sets the
icestack connection's own).
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from ice import Candidate as IceCandidate
from ice.config import AgentConfig
from stun.address import Address
from tests.net.loopback import run

OURS = ("aioice", "ice.compat.aioice")


def ours(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in OURS)


@pytest.fixture
def compat(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The layer, freshly installed for this test; the modules as they were afterwards."""
    before = {name for name in sys.modules if ours(name)}
    for name in before:
        monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module("ice.compat.aioice")
    yield module
    for name in [name for name in sys.modules if ours(name)]:
        del sys.modules[name]  # monkeypatch then puts back what was there before


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


# --------------------------------------------------------------------------- installing


def test_aiortc_imports_the_layer_after_the_one_line() -> None:
    done = python(
        "import ice.compat.aioice, aioice, aioice.ice, aioice.stun, aioice.candidate\n"
        "from aiortc import rtcicetransport\n"
        "assert rtcicetransport.Connection is ice.compat.aioice.Connection\n"
        "assert aioice.ice.Connection is ice.compat.aioice.Connection\n"
        "assert aioice.candidate.Candidate is rtcicetransport.Candidate\n"
        "print(aioice.__name__, aioice.stun.__name__)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ice.compat.aioice", "ice.compat.aioice.stun"]


def test_refused_after_the_real_aioice_with_what_to_do() -> None:
    done = python("import aioice.ice\nimport ice.compat.aioice\n")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ice.compat.aioice: the real aioice is already imported")
    assert "aioice/__init__.py); import ice.compat.aioice first, before aiortc" in last


def test_an_aioice_module_the_layer_lacks_is_not_found() -> None:
    done = python("import ice.compat.aioice\nimport aioice.turn\n")
    assert "No module named 'aioice.turn'" in done.stderr


# --------------------------------------------------------------------------- Candidate

LINE = "6815297761 1 udp 659136 1.2.3.4 31102 typ srflx raddr 10.0.0.1 rport 5000 generation 0"


def test_candidate_text_round_trips_in_aioices_form(compat: ModuleType) -> None:
    candidate = compat.Candidate.from_sdp(LINE)
    assert (candidate.type, candidate.related_address, candidate.related_port) == (
        "srflx",
        "10.0.0.1",
        5000,
    )
    assert candidate.to_sdp() == LINE
    assert repr(candidate) == f"Candidate({LINE})"
    with pytest.raises(ValueError, match="at least 8 expected"):
        compat.Candidate.from_sdp("1 1 udp 1 1.2.3.4 5 host")


def test_candidate_translation_keeps_every_field(compat: ModuleType) -> None:
    tcp = compat.Candidate("ab", 1, "TCP", 99, "192.0.2.9", 9, "host", tcptype="active")
    ice = compat.candidate.to_ice(tcp)
    assert (ice.transport, ice.tcp_type, ice.address) == ("tcp", "active", Address("192.0.2.9", 9))
    back = compat.candidate.from_ice(IceCandidate.from_sdp(LINE))
    assert back.to_sdp() == LINE
    v6 = compat.Candidate("c", 1, "udp", 1, "2001:db8::1", 9, "host")
    assert tcp.can_pair_with(compat.Candidate("d", 1, "tcp", 1, "192.0.2.1", 9, "host"))
    assert not tcp.can_pair_with(v6)


# --------------------------------------------------------------------------- knobs


def test_knobs_left_alone_keep_icestacks_timers(compat: ModuleType) -> None:
    config, default = compat.ice.agent_config(), AgentConfig()
    assert config.check_transaction == default.check_transaction
    assert (config.consent_interval, config.consent_timeout) == (5.0, 30.0)
    assert config.peer_reflexive_wait == default.peer_reflexive_wait


def test_changed_knobs_become_the_agents(
    compat: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aioice.ice
    import aioice.stun

    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 1)
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 1)
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 1)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.1)
    config = compat.ice.agent_config()
    assert (config.consent_interval, config.consent_timeout, config.disconnected_after) == (
        1,
        1,
        0.5,
    )
    schedule = config.check_transaction
    assert (schedule.initial_rto, schedule.max_requests, schedule.final_wait) == (0.1, 2, 2)
    assert config.peer_reflexive_wait == pytest.approx(0.3)


# --------------------------------------------------------------------------- Connection


def on_loopback(connection: Any) -> Any:
    inner = connection._ice
    inner._options = inner._options._replace(include_loopback=True, interfaces=("127.0.0.1",))
    return connection


def test_arguments_are_translated_or_refused(compat: ModuleType) -> None:
    connection = compat.Connection(
        ice_controlling=False,
        turn_server=("192.0.2.7", 5349),
        turn_username="u",
        turn_password="p",
        turn_ssl=True,
        transport_policy=compat.TransportPolicy.RELAY,
    )
    (server,) = connection._ice._turn_servers
    assert (server.host, server.port, server.transport.value) == ("192.0.2.7", 5349, "tls")
    assert connection._ice._config.policy.value == "relay"
    skipped = compat.Connection(ice_controlling=False, turn_server=("192.0.2.7", 3478))
    assert skipped._ice._turn_servers == []  # no credentials: it could not allocate
    with pytest.raises(ValueError, match="ufrag"):
        compat.Connection(ice_controlling=False, local_username="a b")


def test_remote_candidates_are_the_signalled_list(compat: ModuleType) -> None:
    async def scenario() -> None:
        connection = compat.Connection(ice_controlling=False)
        first = compat.Candidate("0", 1, "UDP", 2122252543, "192.168.99.7", 33543, "host")
        await connection.add_remote_candidate(first)
        await connection.add_remote_candidate(compat.Candidate.from_sdp(
            "1 1 udp 1 192.168.99.7 33543 typ host"))  # fmt: skip
        await connection.add_remote_candidate(compat.Candidate("2", 1, "udp", 1, "x", 1, "host"))
        (listed,) = connection.remote_candidates
        assert listed is not first and vars(listed) == vars(first)
        await connection.add_remote_candidate(None)
        with pytest.raises(ValueError, match="end-of-candidates"):
            await connection.add_remote_candidate(first)
        await connection.close()

    run(scenario())


def test_role_and_lite_are_writable_until_checks(compat: ModuleType) -> None:
    async def scenario() -> None:
        connection = on_loopback(compat.Connection(ice_controlling=False))
        await connection.gather_candidates()
        connection.ice_controlling = True
        assert connection._ice.agent.controlling
        connection.ice_controlling = False
        connection.remote_is_lite = True
        assert connection.ice_controlling is True
        await connection.close()

    run(scenario())


async def gathered_and_signalled(compat: ModuleType) -> tuple[Any, Any]:
    """A controlling and a controlled connection on loopback, each told the other's candidates."""
    a = on_loopback(compat.Connection(ice_controlling=True))
    b = on_loopback(compat.Connection(ice_controlling=False))
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for one, other in ((a, b), (b, a)):
        for candidate in other.local_candidates:
            await one.add_remote_candidate(candidate)
    return a, b


def test_forced_pairs_carry_data_without_connect(compat: ModuleType) -> None:
    async def scenario() -> None:
        a, b = await gathered_and_signalled(compat)
        for one, other in ((a, b), (b, a)):
            local = one.get_default_candidate(1)
            remote = other.get_default_candidate(1)
            one.set_selected_pair(1, local.foundation, remote.foundation)
        await a.send(b"\x80ping")
        assert await asyncio.wait_for(b.recv(), 5) == b"\x80ping"
        await b.sendto(b"\x80pong", 1)
        assert await asyncio.wait_for(a.recvfrom(), 5) == (b"\x80pong", 1)
        with pytest.raises(ValueError, match="no local candidate"):
            a.set_selected_pair(1, "nope", "nope")
        await asyncio.gather(a.close(), b.close())

    run(scenario())


def test_connection_closed_at_close_and_when_consent_is_lost(
    compat: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compat.ice, "CONSENT_FAILURES", 1)
    monkeypatch.setattr(compat.ice, "CONSENT_INTERVAL", 1)

    async def scenario() -> None:
        a, b = await gathered_and_signalled(compat)
        for one, other in ((a, b), (b, a)):
            await one.add_remote_candidate(None)
            one.remote_username = other.local_username
            one.remote_password = other.local_password
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 10)
        events = asyncio.ensure_future(b.get_event())
        closed_a = asyncio.ensure_future(a.get_event())
        await asyncio.sleep(0)  # both are waiting now, as aiortc's monitor task is
        await a.close()
        assert isinstance(await closed_a, compat.ConnectionClosed)
        assert await a.get_event() is None
        # b's consent checks go unanswered: consent is lost and b closes itself.
        assert isinstance(await asyncio.wait_for(events, 10), compat.ConnectionClosed)
        with pytest.raises(ConnectionError):
            await b.send(b"\x80late")

    run(scenario())
