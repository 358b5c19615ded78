"""Scale of one mux port: N sessions on one :class:`ice.aio_mux.UdpMux` in this process — ICE-lite
(``icestack``, the natural server mode on a mux) and full ICE (``icestack_full``, which checks
the clients too, as aioice does) — driven by N clients in another process; and the same N
sessions served by aioice 0.13.0 (one socket per session, full ICE: it has no mux and no
ICE-lite), to see how far it gets.

    python -m bench.mux_scale [--sessions 1000,5000,10000] [--consent 12] [--batch 500]
                              [--servers icestack,icestack_full,aioice] [--clients lean|full]

Per N it prints ``name value unit`` lines: the connect rate (sessions connected per second of wall
time, clients connecting ``--batch`` at a time), the server's CPU per session connected, the
server's CPU per consent check while every session holds consent for ``--consent`` seconds (the
clients check every ~5 s, RFC 7675; the checks counted are those the clients saw answered), the
sessions that lost their path, and the server's resident memory per established session (RSS
growth from before the sessions to all connected; each server and N runs in a process of its
own, so that no run reuses the heap another one freed). The clients run in a child process
(``--client``), speaking JSON lines on stdin/stdout; every wait is bounded. By default they are
:mod:`bench.lean_client` sessions (a socket and a few fields each, so that one process drives
10,000); ``--clients full`` uses icestack ``Connection`` s (full ICE, a socket and an agent each).
Everything is on 127.0.0.1.
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

import aioice
import aioice.ice

from bench.lean_client import LeanClients
from ice import Candidate, Connection
from ice.aio_mux import UdpMux
from ice.config import AgentConfig
from ice.mux import MuxConfig

HOST = "127.0.0.1"
#: The bound of every phase.
PHASE_TIMEOUT = 600.0
#: icestack's servers: ICE-lite sessions on the mux, and full-ICE ones.
ICESTACK_SERVERS = ("icestack", "icestack_full")
#: How long a batch of lean clients gets to connect.
LEAN_CONNECT_TIMEOUT = 60.0

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [HOST]


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


async def client_main(kind: str) -> None:
    """The client process: read the servers' descriptions, connect to each, hold consent."""
    stdin = await _stdin()
    lean = LeanClients()
    while True:
        command = await _read(stdin)
        if command["do"] == "quit":
            lean.close()
            return
        descriptions, batch = command["sessions"], command["batch"]
        clients: list[Connection] = []
        for start in range(0, len(descriptions), batch):
            chunk = descriptions[start : start + batch]
            if kind == "lean":
                await _connect_lean(lean, chunk)
                continue
            made = [
                Connection(True, include_loopback=True, interfaces=[HOST], tcp=False) for _ in chunk
            ]
            for connection in made:
                connection.remote_lite = command["lite"]
            await asyncio.gather(*(c.gather_candidates() for c in made))
            for connection, description in zip(made, chunk, strict=True):
                connection.set_remote_credentials(description["ufrag"], description["pwd"])
                await connection.add_remote_candidate(Candidate.from_sdp(description["candidate"]))
                await connection.add_remote_candidate(None)
            _write({"credentials": [_credentials(c, c.local_candidates[0].to_sdp()) for c in made]})
            await asyncio.wait_for(asyncio.gather(*(c.connect() for c in made)), PHASE_TIMEOUT)
            clients += made
        _write({"connected": len(descriptions)})
        before = sum(session.answered for session in lean.sessions)
        await _read(stdin)  # hold consent until told
        answered = sum(session.answered for session in lean.sessions) - before
        lost = sum(1 for c in clients if c.selected_pair() is None)
        for connection in clients:
            await connection.close()
        lean.close()
        _write({"closed": len(descriptions), "consent_answered": answered, "lost": lost})


def _credentials(client: Any, candidate: str) -> list[str]:
    return [client.local_username, client.local_password, "candidate:" + candidate]


async def _connect_lean(lean: LeanClients, chunk: list[dict[str, Any]]) -> None:
    made = lean.add(len(chunk))
    host = f"1 1 udp {2**24} {HOST} {{}} typ host"
    _write({"credentials": [_credentials(s, host.format(s.port)) for s in made]})
    remotes = []
    for description in chunk:
        candidate = Candidate.from_sdp(description["candidate"])
        remotes.append((description["ufrag"], description["pwd"], candidate.host, candidate.port))
    lean.start(made, remotes)
    deadline = time.monotonic() + LEAN_CONNECT_TIMEOUT
    while not all(s.connected for s in made):
        if time.monotonic() > deadline:
            missing = sum(1 for s in made if not s.connected)
            raise TimeoutError(f"{missing} lean clients of {len(made)} did not connect")
        await asyncio.sleep(0.02)


async def _serve_icestack(sessions: int, lite: bool) -> tuple[list[Any], UdpMux]:
    mux = UdpMux(HOST, config=MuxConfig(max_sessions=sessions))
    served = [
        Connection(False, mux=mux, config=AgentConfig(lite=lite, controlling=False))
        for _ in range(sessions)
    ]
    await asyncio.gather(*(s.gather_candidates() for s in served))
    return served, mux


async def _serve_aioice(sessions: int) -> list[Any]:
    served = [aioice.Connection(ice_controlling=False, use_ipv6=False) for _ in range(sessions)]
    for start in range(0, sessions, 500):
        await asyncio.gather(*(s.gather_candidates() for s in served[start : start + 500]))
    return served


async def measure(server: str, sessions: int, consent: float, batch: int, clients: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.mux_scale", "--client", "--clients", clients,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 26,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    name = f"{server}[{sessions}]"
    mux: UdpMux | None = None
    served: list[Any] = []
    try:
        rss_before = _rss()
        if server in ICESTACK_SERVERS:
            served, mux = await _serve_icestack(sessions, lite=server == "icestack")
        else:
            served = await _serve_aioice(sessions)
        descriptions = [
            {"ufrag": s.local_username, "pwd": s.local_password,
             "candidate": "candidate:" + s.local_candidates[0].to_sdp()}
            for s in served
        ]  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        child.stdin.write((json.dumps({"do": "connect", "sessions": descriptions, "batch": batch,
                                       "lite": server == "icestack"}) + "\n").encode())  # fmt: skip
        done = 0
        connecting = []
        while done < sessions:
            credentials = (await _read(child.stdout))["credentials"]
            chunk = served[done : done + len(credentials)]
            for (ufrag, pwd, candidate), connection in zip(credentials, chunk, strict=True):
                connection.remote_username, connection.remote_password = ufrag, pwd
                if server == "aioice":
                    await connection.add_remote_candidate(aioice.Candidate.from_sdp(candidate[10:]))
                elif server == "icestack_full":
                    await connection.add_remote_candidate(Candidate.from_sdp(candidate))
                await connection.add_remote_candidate(None)
            connecting += [asyncio.ensure_future(c.connect()) for c in chunk]
            done += len(credentials)
        await asyncio.wait_for(asyncio.gather(*connecting), PHASE_TIMEOUT)
        assert (await _read(child.stdout))["connected"] == sessions
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"mux_connect_rate_{name} {sessions / wall:.0f} sessions/s", flush=True)
        print(f"mux_cpu_per_connect_{name} {cpu / sessions * 1e6:.0f} us", flush=True)
        per_session = (_rss() - rss_before) / sessions / 1024
        routed = mux.table.routed if mux else 0
        cpu = time.process_time()
        await asyncio.sleep(consent)
        cpu = time.process_time() - cpu
        child.stdin.write(b'{"do": "close"}\n')
        closed = await _read(child.stdout)
        # The checks the clients saw answered; full clients do not count theirs, so then the
        # requests the mux routed (icestack only).
        checks = closed["consent_answered"] or (mux.table.routed - routed if mux else 0)
        print(f"mux_consent_checks_{name} {checks} checks in {consent:g} s")
        print(f"mux_cpu_per_consent_check_{name} {cpu / max(checks, 1) * 1e6:.0f} us")
        if server in ICESTACK_SERVERS:
            lost = sum(1 for s in served if s.selected_pair() is None)
        else:
            lost = sum(1 for s in served if not s._nominated)
        print(f"mux_sessions_without_path_{name} {lost + closed['lost']} sessions")
        print(f"mux_rss_per_established_session_{name} {per_session:.1f} KiB", flush=True)
    finally:
        for connection in served:
            await connection.close()
        if mux is not None:
            mux.close()
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
    parser.add_argument("--batch", type=int, default=500, help="clients connecting at once")
    parser.add_argument(
        "--servers",
        default="icestack,icestack_full,aioice",
        help=f"comma-separated, of {', '.join(ICESTACK_SERVERS)}, aioice",
    )
    parser.add_argument("--clients", choices=("lean", "full"), default="lean")
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(args.clients))
        return
    servers = args.servers.split(",")
    unknown = set(servers) - {*ICESTACK_SERVERS, "aioice"}
    if unknown:
        parser.error(f"--servers: no server named {', '.join(sorted(unknown))}")
    runs = [(server, int(n)) for n in args.sessions.split(",") for server in servers]
    if len(runs) == 1:
        print(f"# pid {os.getpid()}, python {sys.version.split()[0]}; 2-core machine: noisy")
        asyncio.run(measure(*runs[0], args.consent, args.batch, args.clients))
        return
    # Each in a process of its own: one run's freed heap would make the next one's RSS growth
    # look small.
    for server, sessions in runs:
        options = ["--consent", str(args.consent), "--batch", str(args.batch)]
        command = [sys.executable, "-m", "bench.mux_scale", "--sessions", str(sessions)]
        command += ["--servers", server, "--clients", args.clients, *options]
        subprocess.run(command, check=True, timeout=4 * PHASE_TIMEOUT)


if __name__ == "__main__":
    main()
