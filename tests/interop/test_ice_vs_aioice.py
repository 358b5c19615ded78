"""Our ice.Connection against aioice's Connection (aioice 0.13.0 from PyPI) on loopback.

Both roles, with all candidates exchanged before ``connect()`` and trickled while it runs. Both
sides must select the same pair (the same two addresses) and carry data both ways. Candidates
cross as SDP text, as they would between two programs.
"""

from __future__ import annotations

import asyncio

import aioice
import aioice.ice
import pytest

from ice import Candidate, Connection
from tests.net.loopback import run

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"


@pytest.fixture(autouse=True)
def aioice_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice has no option to gather on given addresses and leaves out 127.0.0.1: replace its
    interface listing (``aioice.ice.get_host_addresses``), so that it, too, gathers on loopback
    only and never touches the machine's real interfaces."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [HOST])


def to_aioice(candidate: Candidate) -> aioice.Candidate:
    return aioice.Candidate.from_sdp(candidate.to_sdp())


def from_aioice(candidate: aioice.Candidate) -> Candidate:
    return Candidate.from_sdp(candidate.to_sdp())


async def session(ours_controlling: bool, trickle: bool) -> None:
    ours = Connection(ours_controlling, include_loopback=True, interfaces=[HOST])
    theirs = aioice.Connection(ice_controlling=not ours_controlling, use_ipv6=False)
    try:
        await asyncio.gather(ours.gather_candidates(), theirs.gather_candidates())
        ours.set_remote_credentials(theirs.local_username, theirs.local_password)
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password

        async def signal() -> None:
            for candidate in theirs.local_candidates:
                await ours.add_remote_candidate(from_aioice(candidate))
            for ours_candidate in ours.local_candidates:
                await theirs.add_remote_candidate(to_aioice(ours_candidate))
            await ours.add_remote_candidate(None)
            await theirs.add_remote_candidate(None)

        if trickle:
            connecting = asyncio.gather(ours.connect(), theirs.connect())
            await asyncio.sleep(0)
            assert not connecting.done()
            await signal()
            await connecting
        else:
            await signal()
            await asyncio.gather(ours.connect(), theirs.connect())

        pair = ours.selected_pair()
        assert pair is not None and pair.nominated
        # aioice has no public accessor for its selected pair: _nominated is the one it sends on.
        their_pair = theirs._nominated[1]
        assert their_pair.local_addr == pair.remote.address
        assert their_pair.remote_addr == pair.local_base
        assert ours.controlling is ours_controlling

        await ours.send(b"\x80from icestack")
        assert await theirs.recv() == b"\x80from icestack"
        await theirs.send(b"\x80from aioice")
        assert await ours.recvfrom() == (b"\x80from aioice", 1)
        (selected,) = [s for s in ours.stats() if s.selected]
        assert selected.bytes_received == len(b"\x80from aioice")  # came from the selected remote
    finally:
        await theirs.close()
        await ours.close()


@pytest.mark.parametrize("trickle", [False, True], ids=["all-at-once", "trickle"])
@pytest.mark.parametrize(
    "ours_controlling", [True, False], ids=["ours-controlling", "ours-controlled"]
)
def test_our_connection_and_aioice_connect_and_exchange_data(
    ours_controlling: bool, trickle: bool
) -> None:
    run(session(ours_controlling, trickle))
