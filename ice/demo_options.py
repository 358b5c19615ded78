"""The options of ``icestack demo`` (:mod:`ice.demo`), apart from the demo: its ``--help`` and a
mistaken option (a NAT name that is none) load no agent, server, simulated network or asyncio;
they load when the demo runs.
"""

from __future__ import annotations

import argparse

from stun.lazy_exports import run_later

from .errors import LocalProtocolError
from .netsim_values import NatBehavior

#: The simulated network's seed when ``--seed`` is not given.
SIM_SEED = 1

#: The NAT names ``demo --sim`` accepts, in netsim's spelling.
NAT_NAMES = tuple(behavior.value for behavior in NatBehavior)


def nat_pair(text: str) -> tuple[NatBehavior, NatBehavior]:
    """Parse ``NAT_A,NAT_B`` (an argparse ``type``: a bad name exits 2 with the valid ones)."""
    names = text.split(",")
    if len(names) != 2:
        raise argparse.ArgumentTypeError(
            f"want NAT_A,NAT_B, got {text!r}; NAT names: {', '.join(NAT_NAMES)}"
        )
    try:
        first, second = (NatBehavior.parse(name) for name in names)
    except LocalProtocolError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return first, second


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``icestack demo [--sim NAT_A,NAT_B]``."""
    parser.description = (
        "Connect two ICE agents on loopback with the embedded STUN server, or with "
        "--sim on the simulated network behind the named NATs, in virtual time."
    )
    parser.add_argument(
        "--sim",
        type=nat_pair,
        metavar="NAT_A,NAT_B",
        help=f"run on the simulated network; NAT names: {', '.join(NAT_NAMES)}",
    )
    parser.add_argument(
        "--seed", type=int, help=f"the simulated network's seed (with --sim; default {SIM_SEED})"
    )
    parser.add_argument(
        "--turn",
        action="store_true",
        help="connect through a TURN relay: on loopback relay-only through the embedded TURN "
        "server over TLS; with --sim a TURN server on the WAN for each side",
    )
    parser.set_defaults(run=run_later("ice.demo", "run_demo"))
