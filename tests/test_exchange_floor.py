"""bench.exchange_floor, the floor under the scale benchmark's numbers: its messages are real
STUN (icestack's decoder accepts them and their integrity and fingerprint check), and pairs of
its endpoints connect on loopback with the 6 messages of regular nomination."""

from __future__ import annotations

import asyncio

from bench import exchange_floor
from bench.exchange_floor import Endpoint, endpoint_pairs
from stun.attributes import UseCandidate, Username, XorMappedAddress
from stun.integrity import prepare_key, short_term_key
from stun.message import Message, MessageClass, Method


def _sent(endpoint: Endpoint) -> list[bytes]:
    """Wrap ``endpoint``'s socket so that what it sends is also kept."""
    kept: list[bytes] = []
    real = endpoint._socket

    class Recording:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def sendto(self, data: bytes, address: tuple[str, int]) -> int:
            kept.append(data)
            return real.sendto(data, address)

    endpoint._socket = Recording()  # type: ignore[assignment]
    return kept


def test_pairs_connect_with_six_valid_stun_messages() -> None:
    counted: list[int] = []

    async def run() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        pairs = endpoint_pairs(loop, 3)
        controlling, controlled = pairs[0]
        sent = _sent(controlling), _sent(controlled)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(side.connect() for pair in pairs for side in pair)), 10
            )
            counted.extend(side.sent for side in pairs[0])
        finally:
            for pair in pairs:
                for side in pair:
                    side.close()
        return sent

    by_controlling, by_controlled = asyncio.run(run())
    assert len(by_controlling) + len(by_controlled) == 6
    assert counted == [len(by_controlling), len(by_controlled)]
    controlling_key = short_term_key("password-of-the-controlling")
    other_key = short_term_key("the-other")
    kinds = []
    for raw, own_key, peer_key in (
        *((raw, controlling_key, other_key) for raw in by_controlling),
        *((raw, other_key, controlling_key) for raw in by_controlled),
    ):
        message = Message.decode(raw)
        assert message.check_fingerprint()
        request = message.message_class is MessageClass.REQUEST
        # a request is signed with the receiver's password, an answer with the answerer's own
        assert message.check_integrity(peer_key if request else own_key)
        assert message.method == Method.BINDING
        if request:
            assert message.get(Username) is not None
        else:
            assert message.message_class is MessageClass.SUCCESS_RESPONSE
            assert message.get(XorMappedAddress) is not None
        kinds.append((message.message_class, message.get(UseCandidate) is not None))
    assert kinds.count((MessageClass.REQUEST, False)) == 2
    assert kinds.count((MessageClass.REQUEST, True)) == 1  # the nomination
    assert kinds.count((MessageClass.SUCCESS_RESPONSE, False)) == 3


def test_a_message_that_fails_its_integrity_check_is_ignored() -> None:
    key = prepare_key(b"right")
    message = exchange_floor._signed(0x0001, bytes(12), b"", key)
    assert exchange_floor._verified(message, key) is not None
    assert exchange_floor._verified(message, prepare_key(b"wrong")) is None
    tampered = message[:-9] + bytes([message[-9] ^ 1]) + message[-8:]
    assert exchange_floor._verified(tampered, key) is None
    assert exchange_floor._verified(message[:30], key) is None
