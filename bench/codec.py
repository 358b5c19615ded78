"""Codec throughput: icestack's stun codec against aioice 0.13's, through each one's public API.

Run ``python -m bench.codec`` (as a module: a script run from bench/ would find bench/turn.py
before the turn package); it prints ``name value unit`` lines:

- ``encode_check``: build and encode an ICE connectivity check (USERNAME, PRIORITY,
  ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT; RFC 8445 §7.1).
- ``decode_check``: decode that check, verify FINGERPRINT and MESSAGE-INTEGRITY, read USERNAME,
  PRIORITY, ICE-CONTROLLING and USE-CANDIDATE.
- ``decode_response``: decode a Binding success response (XOR-MAPPED-ADDRESS,
  MESSAGE-INTEGRITY, FINGERPRINT), verify both, read the address.
- ``decode_send_*``: decode a TURN Send indication (XOR-PEER-ADDRESS, DATA, FINGERPRINT; RFC 8656
  §11), verify FINGERPRINT, read the peer address and the data. ``_same``: one message over and
  over; ``_varied``: 2000 messages whose DATA is 20-1200 bytes at random, as a relay sees them;
  ``_new_layouts``: DATA lengths cycling through more message lengths than icestack's layout
  cache holds, so every message is one it has forgotten; ``_repeated``: the same, each message
  ``stun.layout.KEEP_AFTER`` times in a row, so the last of each run pays for keeping a layout
  no later message uses (the worst case of that cache).

Each workload runs in repeated rounds, each timing our loop then aioice's (CPU time of the
thread, so both sides see the same load on a shared machine), and reports each side's best loop
(timeit's advice: the minimum is the least disturbed measurement), as
``codec_<workload>_icestack``, ``_aioice`` (ops/s) and ``_ratio`` (ours / aioice).
``--profile`` also prints where our side spends its time.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import random
import sys
import time
from collections.abc import Callable

from aioice import stun as aioice_stun

import stun
from stun import (
    IceControlling,
    Message,
    MessageClass,
    Method,
    Priority,
    UseCandidate,
    Username,
    XorMappedAddress,
)
from stun.layout import KEEP_AFTER, MAX_CACHED_LAYOUTS
from turn import Data, XorPeerAddress

TRANSACTION_ID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
USERNAME = "aB3d:Xy9Z"
PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
PRIORITY = 1853824767
TIE_BREAKER = 0x932FF9B151263B36
MAPPED = stun.Address("192.0.2.1", 32853)
PEER = stun.Address("198.51.100.7", 5000)


# --------------------------------------------------------------------------- icestack


def icestack_encode_check() -> bytes:
    return Message(
        Method.BINDING,
        MessageClass.REQUEST,
        TRANSACTION_ID,
        [Username(USERNAME), Priority(PRIORITY), IceControlling(TIE_BREAKER), UseCandidate()],
    ).encode(key=PASSWORD, fingerprint=True)


def icestack_encode_response() -> bytes:
    return Message(
        Method.BINDING, MessageClass.SUCCESS_RESPONSE, TRANSACTION_ID, [XorMappedAddress(MAPPED)]
    ).encode(key=PASSWORD, fingerprint=True)


def send_indication(data: bytes) -> bytes:
    return Message(
        Method.SEND,
        MessageClass.INDICATION,
        TRANSACTION_ID,
        [XorPeerAddress(PEER), Data(data)],
    ).encode(fingerprint=True)


CHECK = icestack_encode_check()
RESPONSE = icestack_encode_response()
_sizes = random.Random(13)
#: The Send indications each ``decode_send_*`` workload cycles through.
SENDS: dict[str, list[bytes]] = {
    "same": [send_indication(bytes(500))],
    "varied": [send_indication(_sizes.randbytes(_sizes.randint(20, 1200))) for _ in range(2000)],
    "new_layouts": [send_indication(bytes(4 * n)) for n in range(2 * MAX_CACHED_LAYOUTS)],
    "repeated": [
        send_indication(bytes(4 * (n // KEEP_AFTER)))
        for n in range(2 * KEEP_AFTER * MAX_CACHED_LAYOUTS)
    ],
}


def icestack_decode_check() -> object:
    message = Message.decode(CHECK)
    if not (message.check_fingerprint() and message.check_integrity(PASSWORD)):
        raise AssertionError("check did not verify")
    username = message.get(Username)
    priority = message.get(Priority)
    controlling = message.get(IceControlling)
    assert username is not None and priority is not None and controlling is not None
    return username.value, priority.value, controlling.tie_breaker, message.has(UseCandidate)


def icestack_decode_response() -> stun.Address:
    message = Message.decode(RESPONSE)
    if not (message.check_fingerprint() and message.check_integrity(PASSWORD)):
        raise AssertionError("response did not verify")
    mapped = message.get(XorMappedAddress)
    assert mapped is not None
    return mapped.address


def icestack_decode_send(messages: list[bytes]) -> Callable[[], tuple[str, int, bytes]]:
    stream = itertools.cycle(messages)

    def decode_send() -> tuple[str, int, bytes]:
        message = Message.decode(next(stream))
        if not message.check_fingerprint():
            raise AssertionError("Send indication did not verify")
        peer, data = message.get(XorPeerAddress), message.get(Data)
        assert peer is not None and data is not None
        return peer.address.host, peer.address.port, data.value

    return decode_send


# --------------------------------------------------------------------------- aioice


def aioice_encode_check() -> bytes:
    message = aioice_stun.Message(
        message_method=aioice_stun.Method.BINDING,
        message_class=aioice_stun.Class.REQUEST,
        transaction_id=TRANSACTION_ID,
        attributes={
            "USERNAME": USERNAME,
            "PRIORITY": PRIORITY,
            "ICE-CONTROLLING": TIE_BREAKER,
            "USE-CANDIDATE": None,
        },
    )
    message.add_message_integrity(PASSWORD)  # also adds FINGERPRINT, as aioice's ICE code uses it
    return bytes(message)


def aioice_decode_check() -> object:
    message = aioice_stun.parse_message(CHECK)  # raises if FINGERPRINT does not match
    if not message.check_message_integrity(PASSWORD):
        raise AssertionError("check did not verify")
    attributes = message.attributes
    return (
        attributes["USERNAME"],
        attributes["PRIORITY"],
        attributes["ICE-CONTROLLING"],
        "USE-CANDIDATE" in attributes,
    )


def aioice_decode_response() -> tuple[str, int]:
    message = aioice_stun.parse_message(RESPONSE)
    if not message.check_message_integrity(PASSWORD):
        raise AssertionError("response did not verify")
    address: tuple[str, int] = message.attributes["XOR-MAPPED-ADDRESS"]
    return address


def aioice_decode_send(messages: list[bytes]) -> Callable[[], tuple[str, int, bytes]]:
    stream = itertools.cycle(messages)

    def decode_send() -> tuple[str, int, bytes]:
        message = aioice_stun.parse_message(next(stream))  # raises if FINGERPRINT does not match
        host, port = message.attributes["XOR-PEER-ADDRESS"]
        data: bytes = message.attributes["DATA"]
        return host, port, data

    return decode_send


WORKLOADS: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
    "encode_check": (icestack_encode_check, aioice_encode_check),
    "decode_check": (icestack_decode_check, aioice_decode_check),
    "decode_response": (icestack_decode_response, aioice_decode_response),
    **{
        f"decode_send_{name}": (icestack_decode_send(messages), aioice_decode_send(messages))
        for name, messages in SENDS.items()
    },
}


def check_equivalence() -> None:
    """Both sides must do the same work: identical bytes out, identical values read."""
    assert aioice_encode_check() == CHECK, "the two encoders disagree"
    ours, theirs = icestack_decode_check(), aioice_decode_check()
    assert ours == theirs, (ours, theirs)
    assert tuple(icestack_decode_response()) == aioice_decode_response()
    for messages in SENDS.values():
        ours, theirs = icestack_decode_send(messages[:2])(), aioice_decode_send(messages[:2])()
        assert ours == theirs, (ours, theirs)


# --------------------------------------------------------------------------- timing


def loops_for(function: Callable[[], object], target: float) -> int:
    """How many calls take about ``target`` seconds of CPU (calibrated like timeit)."""
    loops = 1
    while True:
        elapsed = timed(function, loops)
        if elapsed >= target / 5:
            return max(1, int(loops * target / elapsed))
        loops *= 2


def timed(function: Callable[[], object], loops: int) -> float:
    """CPU seconds of this thread for ``loops`` calls: time the scheduler gave to other
    processes on a shared machine is not counted."""
    start = time.thread_time()
    for _ in range(loops):
        function()
    return time.thread_time() - start


def interleaved_rates(
    ours: Callable[[], object], theirs: Callable[[], object], repeats: int, target: float
) -> tuple[float, float]:
    """Best ops/s of each side over ``repeats`` rounds, each round timing ours then theirs, so
    both sides see the same machine load."""
    our_loops, their_loops = loops_for(ours, target), loops_for(theirs, target)
    our_best = their_best = float("inf")
    for _ in range(repeats):
        our_best = min(our_best, timed(ours, our_loops))
        their_best = min(their_best, timed(theirs, their_loops))
    return our_loops / our_best, their_loops / their_best


def profile(function: Callable[[], object], calls: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        function()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed loops per measurement")
    parser.add_argument("--target", type=float, default=0.2, help="seconds per timed loop")
    parser.add_argument("--profile", action="store_true", help="cProfile our side afterwards")
    args = parser.parse_args()
    check_equivalence()
    for name, (ours, theirs) in WORKLOADS.items():
        ours_rate, theirs_rate = interleaved_rates(ours, theirs, args.repeats, args.target)
        print(f"codec_{name}_icestack {ours_rate:.0f} ops/s")
        print(f"codec_{name}_aioice {theirs_rate:.0f} ops/s")
        print(f"codec_{name}_ratio {ours_rate / theirs_rate:.2f} x", flush=True)
    if args.profile:
        for name, (ours, _) in WORKLOADS.items():
            print(f"\n=== profile: {name} (icestack, 20000 calls) ===")
            profile(ours, 20000)


if __name__ == "__main__":
    main()
