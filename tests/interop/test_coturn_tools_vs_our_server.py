"""coturn's ``turnutils_stunclient`` against OUR StunServer on loopback.

Our server runs in a thread with its own event loop, so that the tool can be run (and waited for)
as an ordinary blocking subprocess.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stun import Address, Outcome, ServerStats
from stun.aio import StunServer
from tests.interop.coturn import (
    run_stunclient,
    skip_unless_installed,
    stunclient_command,
)
from tests.net.loopback import LOOPBACK_HOSTS

#: How long the server thread may take to start or stop, and the forced-RFC 5780 test may wait for
#: our server to have answered the tool (a bound against hangs, not a measurement).
BOUND = 10.0


@dataclass(frozen=True, slots=True)
class ServerInThread:
    """Where our threaded server listens (UDP) and what it has counted so far."""

    address: Address
    stats: ServerStats


@contextlib.contextmanager
def our_server_in_thread(host: str) -> Iterator[ServerInThread]:
    """Run our StunServer with a UDP listener on ``host`` in a thread; close it on exit."""
    started: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, StunServer, Address]]
    started = concurrent.futures.Future()

    async def serve() -> None:
        async with StunServer() as server:
            try:
                listener = await server.listen("udp", host, 0)
            except BaseException as exc:
                started.set_exception(exc)
                raise
            started.set_result((asyncio.get_running_loop(), server, listener.address))
            await server.serve_forever()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="our-stun-server")
    thread.start()
    try:
        loop, server, address = started.result(timeout=BOUND)
        try:
            yield ServerInThread(address, server.server.stats)
        finally:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=BOUND)
    finally:
        thread.join(timeout=BOUND)


@pytest.fixture(autouse=True)
def _needs_the_tool() -> None:
    skip_unless_installed("turnutils_stunclient")


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("bind_local", [False, True], ids=["any", "bound"])
def test_stunclient_reads_our_mapped_address(host: str, bind_local: bool) -> None:
    """The tool's one Binding request gets our XOR-MAPPED-ADDRESS; we send no OTHER-ADDRESS, so
    it does not go on to RFC 5780 tests. With ``-L`` it sends from the host it was given."""
    with our_server_in_thread(host) as server:
        result = run_stunclient(server.address, local_host=host if bind_local else None)
        answered = server.stats[Outcome.ANSWERED]
    assert result.returncode == 0, result.output
    assert [address.host for address in result.mapped_addresses] == [host], result.output
    assert "RFC 5780" not in result.output
    assert answered == 1


#: How many times the forced-RFC 5780 run is tried: the tool listens on its own port + 1, which
#: another socket of the machine may hold (it then exits with "Trying to bind"; not our server's
#: doing, and it has no option to pick its port).
TOOL_ATTEMPTS = 3


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_forced_rfc5780_gets_420_and_waits(host: str) -> None:
    """``-f``: after a plain Binding, the tool asks with RESPONSE-PORT (its port + 1) and
    CHANGE-REQUEST, then listens only on that other port. Our server does not honour either
    attribute: it answers 420 listing them, to the port the request came from (it never sends
    elsewhere, so it cannot be used as a reflector). The tool, which has no timeout, keeps waiting
    on the other port; it is stopped here once our server has answered both requests.
    """
    for _ in range(TOOL_ATTEMPTS):
        with our_server_in_thread(host) as server:
            command = stunclient_command(server.address, rfc5780=True)
            tool = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                deadline = time.monotonic() + BOUND
                while (
                    server.stats[Outcome.UNKNOWN_ATTRIBUTE] == 0
                    and tool.poll() is None
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.02)
                still_waiting = tool.poll() is None
            finally:
                tool.kill()
                output = tool.communicate()[0]
            counts = (server.stats[Outcome.ANSWERED], server.stats[Outcome.UNKNOWN_ATTRIBUTE])
        if "Trying to bind" not in output:
            break
    assert counts == (1, 1), output
    assert still_waiting, output
