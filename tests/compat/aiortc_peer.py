"""One aiortc ``RTCPeerConnection``, on icestack (``ice.compat.aioice``) or on aioice, for the
end-to-end tests (``tests/compat/test_aiortc_end_to_end.py``) and the bench
(``bench/aiortc_connect.py``)::

    python -m tests.compat.aiortc_peer {icestack|aioice} {offer|answer}
        [--messages N] [--frames N] [--timeout S] [--turn URI --user U --password P --cafile PEM]

It sends an audio track (aiortc's ``AudioStreamTrack``) and, offering, opens a data channel.
Lines on stdout: ``offer {json}`` or ``answer {json}`` (the session description), then
``result {json}`` once the channel is open, its ``N`` messages are sent and the peer's ``N``
have arrived, and ``--frames`` audio frames of the peer's track were received; it then waits for
``close`` on stdin and exits 0. The offerer reads ``answer {json}`` on stdin, the answerer
``offer {json}``. ``connect`` in the result: seconds from before ``createOffer`` (offerer) or
from reading the offer (answerer) until the data channel was open. With ``--turn``, the only
ICE server is that TURN server and the transport policy is relay; without it, there is none
(host candidates only). Anything that does not complete within ``--timeout`` ends in
``error ...`` and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aiortc_peer")
    parser.add_argument("stack", choices=["icestack", "aioice"])
    parser.add_argument("role", choices=["offer", "answer"])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--turn")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--cafile", help="trust this certificate (a TURN server's over TLS)")
    return parser.parse_args()


class Stdin:
    """Lines from stdin, read on the event loop (no thread left blocked on exit)."""

    def __init__(self) -> None:
        self._reader = asyncio.StreamReader()

    async def open(self) -> None:
        protocol = asyncio.StreamReaderProtocol(self._reader)
        await asyncio.get_running_loop().connect_read_pipe(lambda: protocol, sys.stdin)

    async def read(self, prefix: str) -> dict[str, Any]:
        """The next line, which must be ``prefix`` and then JSON (or ``prefix`` alone)."""
        line = (await self._reader.readline()).decode().rstrip("\n")
        word, _, rest = line.partition(" ")
        if word != prefix:
            raise RuntimeError(f"expected {prefix!r} on stdin, read {line!r}")
        parsed: dict[str, Any] = json.loads(rest) if rest else {}
        return parsed


async def session(args: argparse.Namespace) -> None:
    from aiortc import (
        RTCConfiguration,
        RTCDataChannel,
        RTCIceServer,
        RTCPeerConnection,
        RTCSessionDescription,
    )
    from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    loop = asyncio.get_running_loop()
    stdin = Stdin()
    await stdin.open()
    servers = []
    policy = RTCIceTransportPolicy.ALL
    if args.turn:
        servers = [RTCIceServer(urls=args.turn, username=args.user, credential=args.password)]
        policy = RTCIceTransportPolicy.RELAY
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
    pc.addTrack(AudioStreamTrack())
    opened: asyncio.Future[RTCDataChannel] = loop.create_future()
    messages_in = asyncio.Event()
    frames_in = asyncio.Event()
    received = 0
    frames = 0

    def on_message(message: object) -> None:
        nonlocal received
        received += 1
        if received == args.messages:
            messages_in.set()

    async def read_frames(track: MediaStreamTrack) -> None:
        nonlocal frames
        while frames < args.frames:
            await track.recv()
            frames += 1
        frames_in.set()

    tasks = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tasks.append(asyncio.ensure_future(read_frames(track)))

    def on_open(channel: RTCDataChannel) -> None:
        if not opened.done():
            opened.set_result(channel)

    @pc.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        channel.on("message", on_message)
        on_open(channel)

    start = loop.time()
    if args.role == "offer":
        channel = pc.createDataChannel("e2e")
        channel.on("message", on_message)
        channel.on("open", lambda: on_open(channel))
        await pc.setLocalDescription(await pc.createOffer())
        print("offer", json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}), flush=True)
        await pc.setRemoteDescription(RTCSessionDescription(**await stdin.read("answer")))
    else:
        offer = await stdin.read("offer")
        start = loop.time()
        await pc.setRemoteDescription(RTCSessionDescription(**offer))
        await pc.setLocalDescription(await pc.createAnswer())
        print("answer", json.dumps({"sdp": pc.localDescription.sdp, "type": "answer"}), flush=True)
    channel = await opened
    connect = loop.time() - start
    for index in range(args.messages):
        channel.send(f"message {index}")
    await messages_in.wait()
    await frames_in.wait()
    gatherer = pc.getTransceivers()[0].sender.transport.transport.iceGatherer
    result = {
        "connect": connect,
        "received": received,
        "frames": frames,
        "aioice": sys.modules["aioice"].__name__,
        "local_types": sorted({c.type for c in gatherer.getLocalCandidates()}),
    }
    print("result", json.dumps(result), flush=True)
    await stdin.read("close")
    for task in tasks:
        task.cancel()
    await pc.close()


def main() -> None:
    args = parse()
    if args.cafile:
        os.environ["SSL_CERT_FILE"] = args.cafile  # aioice verifies against the default paths
    if args.stack == "icestack":
        import ice.compat.aioice  # noqa: F401  (before aiortc: the one line)
    try:
        asyncio.run(asyncio.wait_for(session(args), args.timeout))
    except Exception as exc:  # the parent test shows this line and stderr
        print("error", f"{type(exc).__name__}: {exc}", flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
