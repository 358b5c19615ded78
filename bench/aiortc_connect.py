"""What switching aiortc to icestack gains: connect time, plain aiortc (aioice 0.13.0) against
aiortc on ``ice.compat.aioice``, same run.

    python -m bench.aiortc_connect [--runs 5]        (as root: network namespaces)

Each run is one session of two aiortc ``RTCPeerConnection`` processes on the same stack
(``tests/compat/aiortc_peer.py``), in two network namespaces joined by one veth link
(192.0.2.1 and 192.0.2.2: as fast as loopback, which aiortc does not gather on), the bench
relaying their descriptions (``tests/compat/aiortc_session.py``). ``connect``: the offerer's
time from ``createOffer`` until its data channel was open — gathering, the answerer's work,
ICE, DTLS and SCTP included. ``host``: host candidates only; ``turn_tls``: relay-only through
``icestack serve turn`` over TLS on the offerer's host. Medians and p90 over ``--runs`` runs;
the ratio (aioice's median over icestack's) last.
"""

from __future__ import annotations

import argparse
import statistics

from bench.ice import percentile
from tests.compat.aiortc_session import run_session, turn_over_tls, two_hosts
from tests.net.netns import Network, unavailable_reason

STACKS = ("aioice", "icestack")


def connect_times(net: Network, runs: int, **session: object) -> dict[str, float]:
    """The median connect time of each stack (and print every line)."""
    medians = {}
    for stack in STACKS:
        values = [
            run_session(net, stack, stack, messages=10, **session)[0]["connect"]  # type: ignore[arg-type]
            for _ in range(runs)
        ]
        medians[stack] = statistics.median(values)
        name = f"aiortc_connect_{session_name(session)}_{stack}"
        print(f"{name}_median {medians[stack] * 1000:.1f} ms", flush=True)
        print(f"{name}_p90 {percentile(values, 0.9) * 1000:.1f} ms", flush=True)
    return medians


def session_name(session: dict[str, object]) -> str:
    return "turn_tls" if session.get("turn") else "host"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"# skipped: {reason}")
        return
    ratios = {}
    with two_hosts() as net:
        ratios["host"] = connect_times(net, args.runs)
        with turn_over_tls(net) as turn:
            ratios["turn_tls"] = connect_times(net, args.runs, turn=turn)
    for name, medians in ratios.items():
        ratio = medians["aioice"] / medians["icestack"]
        print(f"aiortc_connect_{name}_icestack_speedup_vs_aioice {ratio:.2f} x")


if __name__ == "__main__":
    main()
