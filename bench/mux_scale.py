"""Scale of one mux port: N ICE-lite sessions on one :class:`ice.aio_mux.UdpMux` in this process,
driven by N icestack clients (full ICE, controlling, a socket each) in another process.

    python -m bench.mux_scale [--sessions 1000,5000] [--consent 12] [--batch 200]

Per N it prints ``name value unit`` lines: the connect rate (sessions connected per second of wall
time, clients connecting ``--batch`` at a time), the server's CPU per session connected, the
server's CPU per consent check while every session holds consent for ``--consent`` seconds (the
clients check every ~5 s, RFC 7675; the server answers), and the server's resident memory per
established session (RSS growth from before the sessions to all connected). The clients run in a
child process (``--client``), speaking JSON lines on stdin/stdout; every wait is bounded. Everything
is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from ice import Candidate, Connection
from ice.aio_mux import UdpMux
from ice.config import AgentConfig
from ice.mux import MuxConfig

HOST = "127.0.0.1"
#: The bound of every phase.
PHASE_TIMEOUT = 600.0


def _rss() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _read(stream: asyncio.StreamReader) -> Any:
    line = await asyncio.wait_for(stream.readline(), PHASE_TIMEOUT)
    if not line:
        raise EOFError("the other process ended")
    return json.loads(line)


def _write(document: Any) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


async def _stdin() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 26)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def client_main() -> None:
    """The client process: read the servers' descriptions, connect to each, hold consent."""
    stdin = await _stdin()
    while True:
        command = await _read(stdin)
        if command["do"] == "quit":
            return
        descriptions, batch = command["sessions"], command["batch"]
        clients: list[Connection] = []
        for start in range(0, len(descriptions), batch):
            chunk = descriptions[start : start + batch]
            made = [
                Connection(True, include_loopback=True, interfaces=[HOST], tcp=False) for _ in chunk
            ]
            for connection in made:
                connection.remote_lite = True
            await asyncio.gather(*(c.gather_candidates() for c in made))
            for connection, description in zip(made, chunk, strict=True):
                connection.set_remote_credentials(description["ufrag"], description["pwd"])
                await connection.add_remote_candidate(Candidate.from_sdp(description["candidate"]))
                await connection.add_remote_candidate(None)
            _write({"credentials": [[c.local_username, c.local_password] for c in made]})
            await asyncio.wait_for(asyncio.gather(*(c.connect() for c in made)), PHASE_TIMEOUT)
            clients += made
        _write({"connected": len(clients)})
        await _read(stdin)  # hold consent until told
        for connection in clients:
            await connection.close()
        _write({"closed": len(clients)})


async def measure(sessions: int, consent: float, batch: int) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.mux_scale", "--client",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 26,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        async with UdpMux(HOST, config=MuxConfig(max_sessions=sessions)) as mux:
            rss_before = _rss()
            served = [
                Connection(False, mux=mux, config=AgentConfig(lite=True, controlling=False))
                for _ in range(sessions)
            ]
            await asyncio.gather(*(s.gather_candidates() for s in served))
            descriptions = [
                {"ufrag": s.local_username, "pwd": s.local_password,
                 "candidate": "candidate:" + s.local_candidates[0].to_sdp()}
                for s in served
            ]  # fmt: skip
            wall, cpu = time.perf_counter(), time.process_time()
            child.stdin.write((json.dumps({"do": "connect", "sessions": descriptions,
                                           "batch": batch}) + "\n").encode())  # fmt: skip
            done = 0
            while done < sessions:
                credentials = (await _read(child.stdout))["credentials"]
                for (ufrag, pwd), connection in zip(
                    credentials, served[done : done + len(credentials)], strict=True
                ):
                    connection.set_remote_credentials(ufrag, pwd)
                    await connection.add_remote_candidate(None)
                done += len(credentials)
            await asyncio.wait_for(asyncio.gather(*(s.connect() for s in served)), PHASE_TIMEOUT)
            assert (await _read(child.stdout))["connected"] == sessions
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"mux_connect_rate[{sessions}] {sessions / wall:.0f} sessions/s")
            print(f"mux_cpu_per_connect[{sessions}] {cpu / sessions * 1e6:.0f} us")
            routed = mux.table.routed
            cpu = time.process_time()
            await asyncio.sleep(consent)
            cpu = time.process_time() - cpu
            checks = mux.table.routed - routed
            print(f"mux_consent_checks[{sessions}] {checks} checks in {consent:g} s")
            print(f"mux_cpu_per_consent_check[{sessions}] {cpu / max(checks, 1) * 1e6:.0f} us")
            lost = sum(1 for s in served if s.selected_pair() is None)
            print(f"mux_sessions_without_path[{sessions}] {lost} sessions")
            per_session = (_rss() - rss_before) / sessions / 1024
            print(f"mux_rss_per_established_session[{sessions}] {per_session:.1f} KiB")
            child.stdin.write(b'{"do": "close"}\n')
            await _read(child.stdout)
            for connection in served:
                await connection.close()
    finally:
        if child.returncode is None:
            child.stdin.write(b'{"do": "quit"}\n')
            try:
                await asyncio.wait_for(child.wait(), 30)
            except TimeoutError:
                child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", default="1000", help="N, comma-separated")
    parser.add_argument("--consent", type=float, default=12.0, help="seconds of consent held")
    parser.add_argument("--batch", type=int, default=200, help="clients connecting at once")
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main())
        return
    print(f"# pid {os.getpid()}, python {sys.version.split()[0]}; 2-core machine shared: noisy")
    for sessions in (int(n) for n in args.sessions.split(",")):
        asyncio.run(measure(sessions, args.consent, args.batch))


if __name__ == "__main__":
    main()
