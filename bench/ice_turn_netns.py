"""Connect time with UDP blocked: icestack's Connection vs aioice 0.13.0 through coturn over TLS,
in network namespaces, same run.

    python -m bench.ice_turn_netns [--runs 10]        (as root)

The network of ``tests/net/test_udp_blocked_turn.py``: two hosts behind NATs whose routers drop
every UDP datagram they would forward, coturn on the public side (``203.0.113.1``, TLS on 5349,
a throw-away certificate for that address). Each run starts one agent process per host
(``bench/turn_agent.py``), both of one library, relay-only over TLS; the bench relays their
descriptions. ``gather``: the agent's own measure of gathering (TCP connect, TLS handshake,
Allocate with its 401); ``connect``: from reading the peer's description until ``connect()``
returned, on the controlling side. Medians and p90 over ``--runs`` runs; ratios last. The
connect time is bimodal: a check that reaches the peer's relay before the peer has given a
permission for our relayed address is dropped by the server, and waits for its retransmission.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench.ice import percentile
from stun.tls import make_self_signed
from tests.net.netns import Network, network, unavailable_reason
from tests.net.test_udp_blocked_turn import (
    PASSWORD,
    SERVER,
    TLS_PORT,
    USER,
    Blocked,
    block_udp,
    coturn,
)

#: The bound on reading one line from an agent.
LINE_TIMEOUT = 30.0


def one_run(net: Network, library: str, cafile: Path) -> dict[str, float]:
    """One connection between host-a (controlling) and host-b; the controlling side's times."""
    common = ["-m", "bench.turn_agent", library, "--server", f"{SERVER}:{TLS_PORT}", "--user",
              USER, "--password", PASSWORD, "--cafile", str(cafile)]  # fmt: skip
    with (
        net.start_python("host-a", *common, "--controlling", name=f"{library}-a") as a,
        net.start_python("host-b", *common, "--controlled", name=f"{library}-b") as b,
    ):
        descriptions = [a.read_line(LINE_TIMEOUT), b.read_line(LINE_TIMEOUT)]
        a.write_line(descriptions[1])
        b.write_line(descriptions[0])
        results = [json.loads(side.read_line(LINE_TIMEOUT)) for side in (a, b)]
        for side in (a, b):
            assert side.wait(LINE_TIMEOUT) == 0, side.describe()
    result: dict[str, float] = results[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"# skipped: {reason}")
        return
    medians: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="icestack-bench-") as folder,
        network(ipv4=True, ipv6=False) as net,
    ):
        block_udp(net)
        blocked = Blocked(net, make_self_signed(Path(folder), addresses=(SERVER,)))
        with coturn(blocked, Path(folder) / "coturn"):
            for library in ("icestack", "aioice"):
                runs = [one_run(net, library, blocked.tls.certificate) for _ in range(args.runs)]
                medians[library] = {}
                for run in runs:
                    run["total"] = run["gather"] + run["connect"]
                for what in ("gather", "connect", "total"):
                    values = [run[what] for run in runs]
                    medians[library][what] = statistics.median(values)
                    name = f"udp_blocked_turn_tls_{what}_{library}"
                    print(f"{name}_median {medians[library][what] * 1000:.2f} ms")
                    print(f"{name}_p90 {percentile(values, 0.9) * 1000:.2f} ms")
    for what in ("gather", "connect", "total"):
        ratio = medians["aioice"][what] / medians["icestack"][what]
        print(f"udp_blocked_turn_tls_{what}_icestack_speedup_vs_aioice {ratio:.2f} x")


if __name__ == "__main__":
    main()
