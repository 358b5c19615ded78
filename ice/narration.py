"""What ``icestack demo`` and ``icestack ice offer|answer`` show and measure: one line per ICE
event (:func:`describe_event`), a live view with a status line on a terminal (:class:`LiveView`),
and a data echo over a connection that measures round trips (:func:`echo`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from stun.address import is_destination

from .aio import Connection
from .candidate import Candidate
from .checklist import CandidatePair
from .errors import IceConnectionError
from .events import (
    CandidateGathered,
    GatheringCompleted,
    GatheringFailed,
    IceEvent,
    PairStateChanged,
    RemoteCandidateLearned,
    RoleChanged,
    SelectedPairChanged,
    StateChanged,
)

#: How many echo round trips each side of the demo makes once connected.
ECHO_COUNT = 3
#: Application data of the echo: first bytes above 3, so never taken for STUN (RFC 7983).
PING = b"ping "
PONG = b"pong "
DONE = b"done"


def describe_pair(pair: CandidatePair) -> str:
    """``srflx 203.0.113.1:40000 -> host 198.51.100.2:50000``: the candidate types and addresses."""
    return f"{pair.local.type} {pair.local.address} -> {pair.remote.type} {pair.remote.address}"


def describe_candidate(candidate: Candidate) -> str:
    related_address = candidate.related_address
    hidden = related_address is None or not is_destination(related_address)  # 0.0.0.0 port 0
    related = "" if hidden else f" (base {related_address})"
    return f"{candidate.type} {candidate.address}{related}"


def describe_event(event: IceEvent) -> str | None:
    """One log line for an agent event, or ``None`` for events the demo does not show."""
    if isinstance(event, CandidateGathered):
        return f"candidate {describe_candidate(event.candidate)}"
    if isinstance(event, GatheringFailed):
        return f"no srflx from {event.server} via {event.base}: {event.reason}"
    if isinstance(event, GatheringCompleted):
        return "gathering complete"
    if isinstance(event, RemoteCandidateLearned):
        return f"learnt peer-reflexive remote {event.candidate.address}"
    if isinstance(event, PairStateChanged):
        pair = event.pair
        nominated = ", nominated" if pair.nominated else ""
        return f"pair {describe_pair(pair)}: {pair.state.value}{nominated}"
    if isinstance(event, SelectedPairChanged):
        return f"selected {describe_pair(event.pair)}"
    if isinstance(event, RoleChanged):
        return f"role conflict: now {'controlling' if event.controlling else 'controlled'}"
    if isinstance(event, StateChanged):
        return f"state {event.state.value}"
    return None


def milliseconds(duration: float) -> str:
    return f"{duration * 1000:.2f} ms"


@dataclass
class EchoResult:
    """The round trips one side measured: ``rtts`` of the pings answered, out of ``sent``."""

    sent: int = 0
    rtts: list[float] = field(default_factory=list)

    def describe(self) -> str:
        if not self.rtts:
            return f"no answer to {self.sent} pings"
        rtts = sorted(self.rtts)
        return (
            f"{milliseconds(sum(rtts) / len(rtts))} mean, {milliseconds(rtts[0])} min, "
            f"{milliseconds(rtts[-1])} max ({len(rtts)}/{self.sent} answered)"
        )


def sequence_of(text: bytes) -> int:
    """The number in a ping or pong (-1 when there is none)."""
    return int(text) if text.isdigit() else -1


#: The frames of the spinner a live view shows on a terminal.
SPINNER = "|/-\\"


class LiveView:
    """Log lines, plus a status line with a spinner under them when ``out`` is a terminal.

    On a terminal the status line is redrawn in place (carriage return, erase line) every
    ``interval`` seconds while :meth:`spin` runs; elsewhere (a pipe, a CI log) only the log lines
    are written, so captured output stays clean.
    """

    def __init__(self, out: TextIO, *, live: bool | None = None, interval: float = 0.1) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.interval = interval
        self.status = ""
        self._frame = 0
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def line(self, text: str) -> None:
        """Write one log line stamped with the seconds since the view started."""
        self._write(f"[{self.elapsed():8.3f}s] {text}\n")

    def say(self, text: str) -> None:
        """Write one plain line."""
        self._write(text + "\n")

    def set_status(self, text: str) -> None:
        self.status = text
        if self.live:
            self._write("")

    def _write(self, text: str) -> None:
        if self.live:
            text = "\r\x1b[K" + text
            if self.status:
                # Cut to the terminal's width: a wrapped status line could not be redrawn.
                width = shutil.get_terminal_size().columns - 1
                text += f"{SPINNER[self._frame % len(SPINNER)]} {self.status}"[:width]
        self.out.write(text)
        self.out.flush()

    async def spin(self) -> None:
        """Turn the spinner until cancelled (does nothing off a terminal)."""
        if not self.live:
            return
        while True:
            await asyncio.sleep(self.interval)
            self._frame += 1
            self._write("")

    def close(self) -> None:
        """Erase the status line."""
        if self.live:
            self.status = ""
            self._write("")


async def echo(
    connection: Connection,
    count: int,
    *,
    patience: float = 1.0,
    on_rtt: Callable[[int, float], None] | None = None,
) -> EchoResult:
    """Measure ``count`` round trips over ``connection`` while answering the peer's own pings.

    Both sides run this at once. Each ping waits up to ``patience`` seconds for its pong (a lost
    one is counted, not resent); then the side says ``done`` and keeps answering until the peer
    says it too, or ``patience`` seconds pass, so neither leaves while the other still measures.
    """
    loop = asyncio.get_running_loop()
    pongs: dict[int, asyncio.Future[float]] = {}
    peer_done = asyncio.Event()

    async def answer() -> None:
        with contextlib.suppress(IceConnectionError):
            while True:
                data = await connection.recv()
                if data.startswith(PING):
                    await connection.send(PONG + data[len(PING) :])
                elif data == DONE:
                    peer_done.set()
                elif data.startswith(PONG):
                    future = pongs.get(sequence_of(data[len(PONG) :]))
                    if future is not None and not future.done():
                        future.set_result(loop.time())

    answering = asyncio.ensure_future(answer())
    result = EchoResult()
    try:
        for sequence in range(count):
            pongs[sequence] = loop.create_future()
            sent_at = loop.time()
            await connection.send(PING + str(sequence).encode())
            result.sent += 1
            try:
                async with asyncio.timeout(patience):
                    rtt = await pongs[sequence] - sent_at
            except TimeoutError:
                continue
            result.rtts.append(rtt)
            if on_rtt is not None:
                on_rtt(sequence, rtt)
        for _ in range(3):  # three times: a lost "done" costs the peer ``patience``, no more
            await connection.send(DONE)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):
                await peer_done.wait()
    finally:
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
    return result
