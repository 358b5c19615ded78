"""aiortc end to end on ``ice.compat.aioice``: two ``RTCPeerConnection`` processes, one on
icestack and one on aioice 0.13.0, or both on icestack, in two network namespaces joined by
one link (:mod:`tests.compat.aiortc_session`). Each session carries a data channel with 1,000
messages each way and an audio track (aiortc's ``AudioStreamTrack``) whose frames arrive at
the other side — over host candidates, and relay-only through our own TURN server over TLS.
icestack offers (controls) beside aioice over host candidates and answers through the relay.
"""

from __future__ import annotations

import pytest

from tests.compat.aiortc_session import run_session, turn_over_tls, two_hosts

pytestmark = [pytest.mark.interop, pytest.mark.netns]

pytest.importorskip("aiortc", reason="aiortc is in the test extra: pip install -e '.[test]'")

MESSAGES = 1000
STACKS = {"icestack": "ice.compat.aioice", "aioice": "aioice"}


def check(result: dict[str, object], stack: str, local_types: list[str]) -> None:
    assert result["aioice"] == STACKS[stack]  # the peer really ran on that stack
    assert result["received"] == MESSAGES
    assert result["frames"] == 10
    assert result["local_types"] == local_types


@pytest.mark.parametrize(("offer", "answer"), [("icestack", "aioice"), ("icestack", "icestack")])
def test_host_candidates(offer: str, answer: str) -> None:
    with two_hosts() as net:
        a, b = run_session(net, offer, answer, messages=MESSAGES)
    check(a, offer, ["host"])
    check(b, answer, ["host"])


@pytest.mark.parametrize(("offer", "answer"), [("aioice", "icestack"), ("icestack", "icestack")])
def test_relay_only_through_our_turn_server_over_tls(offer: str, answer: str) -> None:
    with two_hosts() as net, turn_over_tls(net) as turn:
        a, b = run_session(net, offer, answer, turn=turn, messages=MESSAGES)
    check(a, offer, ["relay"])
    check(b, answer, ["relay"])
