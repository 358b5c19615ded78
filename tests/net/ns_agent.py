"""An ICE agent process for the namespace tests, signaling as JSON lines on stdin/stdout.

``python -m tests.net.ns_agent NAME --controlling|--controlled --stun HOST:PORT [--no-tcp]`` runs
one :class:`ice.Connection` (with ICE-TCP unless ``--no-tcp``; ``--lite``, ``--remote-lite``
and ``--advertise PUBLIC[/PRIVATE]`` for the ICE-lite server behind a 1:1 NAT):

1. gathers, then prints its description: ``{"ufrag": ..., "pwd": ..., "candidates": [...]}``
   (candidates in SDP ``candidate:`` form);
2. reads the peer's description, one line on stdin, and connects;
3. exchanges a hello each way over the selected pair (:func:`exchange`);
4. prints its result: ``{"selected": {"local": ..., "remote": ...}, "received": ...}``, each
   candidate as ``{"type", "host", "port", "transport", "tcptype"}``, and exits 0 (1 with
   ``{"error": ...}`` otherwise).

:mod:`tests.net.aioice_agent` speaks the same lines with aioice, so the test relays either.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any

import ice
from ice.aio_mux import Mux
from ice.config import AgentConfig

#: The bound on the whole run of an agent process.
RUN_TIMEOUT = 15.0
#: How often a hello is resent until the peer acknowledges it.
HELLO_INTERVAL = 0.1
#: How long an agent keeps acknowledging the peer's hellos after its own was acknowledged,
#: in case the peer missed an acknowledgement.
LINGER = 0.3
HELLO = b"hello from "
ACK = b"ack"
DONE = b"done"


def stun_server(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` (an argparse type)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The command line both agent scripts share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("name", help="this agent's name, sent in its hello")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", dest="controlling", action="store_true")
    role.add_argument("--controlled", dest="controlling", action="store_false")
    parser.add_argument("--stun", type=stun_server, required=True, metavar="HOST:PORT")
    return parser


def parse_arguments(description: str) -> argparse.Namespace:
    return argument_parser(description).parse_args()


def print_line(document: dict[str, Any]) -> None:
    """One JSON document, one line, flushed."""
    print(json.dumps(document), flush=True)


async def read_description() -> dict[str, Any]:
    """The peer's description: one JSON line on stdin."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise EOFError("stdin closed before the peer's description")
    description: dict[str, Any] = json.loads(line)
    return description


def describe(
    candidate_type: str, host: str, port: int, transport: str = "udp", tcp_type: str | None = None
) -> dict[str, Any]:
    return {
        "type": candidate_type, "host": host, "port": port,
        "transport": transport, "tcptype": tcp_type,
    }  # fmt: skip


def describe_candidate(candidate: ice.Candidate) -> dict[str, Any]:
    tcp_type = candidate.tcp_type.value if candidate.tcp_type else None
    return describe(
        candidate.type.value, candidate.host, candidate.port, candidate.transport, tcp_type
    )


async def exchange(
    name: str, send: Callable[[bytes], Awaitable[None]], receive: Callable[[], Awaitable[bytes]]
) -> str:
    """Send our hello until the peer acknowledges it, acknowledging each of the peer's hellos,
    then say ``done`` until the peer says it too; return the peer's hello. Resending covers data
    sent before the peer's ``connect()`` returned; the ``done`` round keeps either side from
    closing while the other still waits — on a TCP path, closing with data unread makes the
    kernel send a reset, which discards what the peer had not read yet."""
    peer_hello: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    acknowledged = asyncio.Event()
    peer_done = asyncio.Event()
    news = asyncio.Event()

    def finished() -> bool:
        return acknowledged.is_set() and peer_hello.done()

    async def answer() -> None:
        while True:
            data = await receive()
            if data.startswith(HELLO):
                if not peer_hello.done():
                    peer_hello.set_result(data.decode())
                await send(ACK)
            elif data == ACK:
                acknowledged.set()
            elif data == DONE:
                peer_done.set()
                if finished():  # in case our own done was lost
                    await send(DONE)
            news.set()

    async def say(message: bytes) -> None:
        news.clear()
        await send(message)
        with suppress(TimeoutError):
            await asyncio.wait_for(news.wait(), HELLO_INTERVAL)

    answering = asyncio.create_task(answer())
    try:
        while not finished():
            try:
                await say(HELLO + name.encode())
            except ConnectionError:
                # The peer was done and closed; its hello came (its result says whether ours did).
                if peer_hello.done():
                    return peer_hello.result()
                raise
        with suppress(ConnectionError):  # the peer, done, closed: all it needed it has
            await send(DONE)
            while not peer_done.is_set():
                await say(DONE)
        await asyncio.sleep(LINGER)
        return peer_hello.result()
    finally:
        answering.cancel()
        with suppress(asyncio.CancelledError, ConnectionError):
            await answering


def run_agent(session: Coroutine[Any, Any, dict[str, Any]]) -> int:
    """Run ``session`` (bounded by :data:`RUN_TIMEOUT`); print its result or the error."""
    try:
        result = asyncio.run(asyncio.wait_for(session, RUN_TIMEOUT))
    except Exception as exc:
        print_line({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    print_line(result)
    return 0


async def gather_signal_connect(connection: ice.Connection) -> None:
    """Gather, print our description, read the peer's (non-trickle signalling) and connect."""
    await connection.gather_candidates()
    print_line(
        {
            "ufrag": connection.local_username,
            "pwd": connection.local_password,
            "candidates": [candidate.to_sdp() for candidate in connection.local_candidates],
        }
    )
    remote = await read_description()
    connection.set_remote_credentials(remote["ufrag"], remote["pwd"])
    for line in remote["candidates"]:
        await connection.add_remote_candidate(ice.Candidate.from_sdp(line))
    await connection.add_remote_candidate(None)
    await connection.connect()


async def session(
    name: str,
    controlling: bool,
    stun: tuple[str, int],
    *,
    tcp: bool = True,
    lite: bool = False,
    remote_lite: bool = False,
    advertise: list[str] | None = None,
    mux_host: str | None = None,
) -> dict[str, Any]:
    """Gather, signal, connect, exchange hellos; the result line. With ``mux_host``, the
    connection is on a :class:`~ice.aio_mux.Mux` of that address (UDP and TCP ports)."""
    mux = None if mux_host is None else Mux(mux_host)
    connection = ice.Connection(
        controlling,
        stun_servers=[stun],
        tcp=tcp,
        advertised_addresses=advertise,
        mux=mux,
        config=AgentConfig(lite=lite, controlling=controlling),
    )
    connection.remote_lite = remote_lite
    try:
        await gather_signal_connect(connection)
        # Taken now: a TCP pair is lost (and reported) as soon as the peer, done first, closes.
        pair = connection.selected_pair()
        assert pair is not None
        received = await exchange(name, connection.send, connection.recv)
        return {
            "selected": {
                "local": describe_candidate(pair.local),
                "remote": describe_candidate(pair.remote),
            },
            "received": received,
        }
    finally:
        await connection.close()
        if mux is not None:
            mux.close()


def main() -> int:
    parser = argument_parser("an icestack ICE agent speaking JSON lines on stdin/stdout")
    parser.add_argument("--no-tcp", dest="tcp", action="store_false", help="offer no ICE-TCP")
    parser.add_argument("--lite", action="store_true", help="be an ICE-lite agent")
    parser.add_argument("--remote-lite", action="store_true", help="the peer is ICE-lite")
    parser.add_argument("--advertise", action="append", metavar="PUBLIC[/PRIVATE]")
    parser.add_argument("--mux", metavar="HOST", help="serve on a shared-port mux on HOST")
    args = parser.parse_args()
    return run_agent(
        session(
            args.name,
            args.controlling,
            args.stun,
            tcp=args.tcp,
            lite=args.lite,
            remote_lite=args.remote_lite,
            advertise=args.advertise,
            mux_host=args.mux,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
