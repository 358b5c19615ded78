"""Our ice.Connection against aioice's (0.13.0 from PyPI), both relay-only through coturn over
TCP and over TLS (aioice's ``turn_transport="tcp"`` and ``turn_ssl``), in both roles, on
loopback: the two agree on the relay-to-relay pair and carry data both ways through coturn.
"""

from __future__ import annotations

import asyncio

import aioice
import aioice.ice
import pytest

from ice import Candidate, CandidateType, Connection
from stun.tls import CertificateFiles, client_context
from tests.interop.conftest import TEST_CREDENTIALS
from tests.interop.coturn import RunningTurnserver
from tests.interop.test_ice_vs_aioice import HOST, from_aioice, to_aioice
from tests.net.loopback import run

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def aioice_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice gathers on 127.0.0.1 only (it has no option for it, see test_ice_vs_aioice)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [HOST])


def our_uri(server: RunningTurnserver, transport: str) -> str:
    if transport == "tls":
        return f"turns:{HOST}:{server.tls_address(HOST).port}"
    return f"turn:{HOST}:{server.port}?transport=tcp"


async def session(
    server: RunningTurnserver, transport: str, ours_controlling: bool, tls: CertificateFiles
) -> None:
    user, password = TEST_CREDENTIALS.username, TEST_CREDENTIALS.password
    ours = Connection(
        ours_controlling,
        turn_servers=[(our_uri(server, transport), user, password)],
        relay_only=True,
        include_loopback=True,
        interfaces=[HOST],
        turn_tls_cafile=tls.certificate,
    )
    address = server.tls_address(HOST) if transport == "tls" else server.address(HOST)
    theirs = aioice.Connection(
        ice_controlling=not ours_controlling,
        use_ipv6=False,
        turn_server=(address.host, address.port),
        turn_username=user,
        turn_password=password,
        turn_transport="tcp",
        turn_ssl=client_context(tls.certificate) if transport == "tls" else False,  # type: ignore[arg-type]
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    try:
        await asyncio.gather(ours.gather_candidates(), theirs.gather_candidates())
        (our_candidate,) = ours.local_candidates
        assert our_candidate.type is CandidateType.RELAYED
        assert [c.type for c in theirs.local_candidates] == ["relay"]
        ours.set_remote_credentials(theirs.local_username, theirs.local_password)
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password
        for candidate in theirs.local_candidates:
            await ours.add_remote_candidate(from_aioice(candidate))
        await theirs.add_remote_candidate(to_aioice(our_candidate))
        await ours.add_remote_candidate(None)
        await theirs.add_remote_candidate(None)
        await asyncio.wait_for(asyncio.gather(ours.connect(), theirs.connect()), 15)

        pair = ours.selected_pair()
        assert pair is not None and pair.nominated
        assert pair.local == our_candidate
        remote: Candidate = from_aioice(theirs.local_candidates[0])
        assert pair.remote.address == remote.address
        (selected,) = [s for s in ours.stats() if s.selected]
        assert selected.relay_protocol == transport
        await ours.send(b"\x80from icestack through coturn")
        assert await asyncio.wait_for(theirs.recv(), 5) == b"\x80from icestack through coturn"
        await theirs.send(b"\x80from aioice through coturn")
        assert await asyncio.wait_for(ours.recv(), 5) == b"\x80from aioice through coturn"
    finally:
        await theirs.close()
        await ours.close()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
@pytest.mark.parametrize(
    "ours_controlling", [True, False], ids=["ours-controlling", "ours-controlled"]
)
def test_our_connection_and_aioice_connect_through_coturn_over_tcp_and_tls(
    coturn_auth: RunningTurnserver,
    tls_certificate: CertificateFiles,
    transport: str,
    ours_controlling: bool,
) -> None:
    run(session(coturn_auth, transport, ours_controlling, tls_certificate))
