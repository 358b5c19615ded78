"""The TURN server's Refresh: the lean path against the typed path, in memory (sans-IO).

Run ``python -m bench.turn_refresh``; it prints ``name value unit`` lines. One
:class:`turn.server.TurnServerCore` holds one UDP allocation, and the same Refresh request
(LIFETIME 600, a valid nonce) is answered over and over, through
:meth:`~turn.server.TurnServerCore.handle_datagram` (the typed path: decode, authenticate,
:class:`~turn.server.methods.RequestHandlers`, encode) and through
:meth:`~turn.server.TurnServerCore.relay_from_client` (the lean path the UDP driver calls), in
two shapes:

- ``rfc8489``: what icestack's own TurnClient sends to a server that offers password
  algorithms: LIFETIME, SOFTWARE, USERNAME, REALM, NONCE, PASSWORD-ALGORITHMS,
  PASSWORD-ALGORITHM (SHA-256), MESSAGE-INTEGRITY-SHA256, FINGERPRINT.
- ``rfc5389``: what coturn's turnutils_uclient sends: LIFETIME, USERNAME, REALM, NONCE,
  MESSAGE-INTEGRITY (MD5 key), FINGERPRINT.

Both paths must give the same bytes, and the request must be of the shape the lean path reads
(checked first). The same request repeated is the best case for the lean path's caches (the
attributes it read, keyed by their bytes; the nonce found genuine): a real client refreshes
every few minutes with a nonce that may have changed, so read these figures as the cost of the
path when the caches hit, not as a server's cost per Refresh. There is no peer to compare with:
coturn's Refresh is measured, with its whole allocation, by ``bench.turn``'s ``allocations``.

Each round times the typed loop then the lean one (CPU time of the thread), and each side's
best round is reported:
``refresh_<shape>_typed`` and ``_lean`` (µs per request) and ``_speedup`` (typed / lean).
``--profile`` also prints where the lean path spends its time.
"""

from __future__ import annotations

import argparse
import random

from bench.codec import interleaved_rates, profile
from stun import (
    Address,
    AddressFamily,
    AlgorithmEntry,
    Attribute,
    Integrity,
    Message,
    MessageClass,
    Method,
    Nonce,
    PasswordAlgorithm,
    PasswordAlgorithmId,
    PasswordAlgorithms,
    Realm,
    Software,
    Username,
    long_term_key,
)
from stun.server import LongTermCredentials
from turn import Lifetime, RequestedTransport
from turn.server import PeerPolicy, PortRangeAllocator, TurnServerConfig, TurnServerCore

REALM = "bench"
USER, PASSWORD = "bench", "relay-me"
SERVER = Address("192.0.2.1", 3478)
CLIENT = Address("198.51.100.7", 40000)
NOW = 10.0


def _server() -> TurnServerCore:
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords(REALM, {USER: PASSWORD}),
        nonce_secret=b"n" * 16,
        rng=random.Random(1),
        peer_policy=PeerPolicy(allow_documentation_peers=True),
    )
    relays = PortRangeAllocator({AddressFamily.IPV4: "192.0.2.1"}, range(50000, 50010))
    return TurnServerCore(config, relays)


def _ask(server: TurnServerCore, request: bytes) -> Message:
    answer = server.handle_datagram(request, SERVER, CLIENT, NOW)
    assert answer is not None, "the server did not answer"
    return Message.decode(answer.data)


def refresh_request(server: TurnServerCore, rfc8489: bool) -> bytes:
    """Allocate on ``server`` (after the 401), then the Refresh request of one shape."""
    challenge = _ask(
        server,
        Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(12), [RequestedTransport()]).encode(),
    )
    nonce = challenge.get(Nonce)
    offered = challenge.get(PasswordAlgorithms)
    assert nonce is not None and offered is not None
    credentials: list[Attribute] = [Username(USER), Realm(REALM), Nonce(nonce.value)]
    algorithm = PasswordAlgorithmId.MD5
    integrity = Integrity.SHA1
    extra: list[Attribute] = []
    if rfc8489:
        algorithm = PasswordAlgorithmId.SHA256
        integrity = Integrity.SHA256
        credentials += [offered, PasswordAlgorithm(algorithm)]
        extra = [Software("icestack client")]
    key = long_term_key(USER, REALM, PASSWORD, algorithm)
    allocate = Message(
        Method.ALLOCATE,
        MessageClass.REQUEST,
        bytes(11) + b"\x01",
        [RequestedTransport(), *credentials],
    )
    allocated = _ask(server, allocate.encode(key=key, integrity=integrity, fingerprint=True))
    assert allocated.error_code is None, allocated.error_code
    refresh = Message(
        Method.REFRESH,
        MessageClass.REQUEST,
        bytes(range(12)),
        [Lifetime(600), *extra, *credentials],
    )
    assert AlgorithmEntry(algorithm) in offered.algorithms
    return refresh.encode(key=key, integrity=integrity, fingerprint=True)


def workloads() -> dict[str, tuple[TurnServerCore, bytes]]:
    """A server with an allocation and its Refresh request, per shape."""
    shapes = {}
    for name, rfc8489 in (("rfc8489", True), ("rfc5389", False)):
        server = _server()
        shapes[name] = (server, refresh_request(server, rfc8489))
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed loops per measurement")
    parser.add_argument("--target", type=float, default=0.2, help="seconds per timed loop")
    parser.add_argument("--profile", action="store_true", help="cProfile the lean path afterwards")
    args = parser.parse_args()
    source = tuple(CLIENT)
    for name, (server, request) in workloads().items():
        typed = server.handle_datagram(request, SERVER, CLIENT, NOW)
        lean = server.relay_from_client(request, SERVER, source, NOW)
        assert typed is not None and typed == lean, "the lean and typed answers differ"
        # Equal answers would also come from a lean path that declined: make sure it reads it.
        assert server._refresh_reader.read(request) is not None, f"{name}: not the lean shape"

        def typed_path(server: TurnServerCore = server, request: bytes = request) -> object:
            return server.handle_datagram(request, SERVER, CLIENT, NOW)

        def lean_path(server: TurnServerCore = server, request: bytes = request) -> object:
            return server.relay_from_client(request, SERVER, source, NOW)

        typed_rate, lean_rate = interleaved_rates(typed_path, lean_path, args.repeats, args.target)
        print(f"refresh_{name}_typed {1e6 / typed_rate:.1f} us")
        print(f"refresh_{name}_lean {1e6 / lean_rate:.1f} us")
        print(f"refresh_{name}_speedup {lean_rate / typed_rate:.2f} x", flush=True)
        if args.profile:
            print(f"\n=== profile: {name} (lean path, 20000 requests) ===")
            profile(lean_path, 20000)


if __name__ == "__main__":
    main()
