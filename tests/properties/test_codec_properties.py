"""Hypothesis properties of the STUN codec: round trips; malformed input raises only DecodeError.

The attribute strategies produce valid values for every attribute class ``stun`` registers (a test
checks none is missing); parsers are fed arbitrary bytes, hand-framed attributes and mutated valid
messages, and must either decode or raise :class:`stun.DecodeError` — nothing else (design §4).
"""

from __future__ import annotations

import importlib
import importlib.util
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stun
from stun import (
    AlgorithmEntry,
    Attribute,
    DecodeError,
    Integrity,
    LocalProtocolError,
    Message,
    MessageClass,
    Method,
)
from stun.attributes import registered_attribute

# Attributes that other packages register (TURN's) are fed garbage too, when they exist.
if importlib.util.find_spec("turn.attributes") is not None:
    importlib.import_module("turn.attributes")

REGISTERED: list[type[Attribute]] = sorted(
    {cls for code in range(0x10000) if (cls := registered_attribute(code)) is not None},
    key=lambda cls: cls.TYPE,
)
SECURITY_CLASSES = (stun.MessageIntegrity, stun.MessageIntegritySha256, stun.Fingerprint)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- valid values

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).flatmap(
    lambda ip: st.integers(0, 0xFFFF).map(lambda port: stun.make_address(str(ip), port))
)
# At most 100 code points of at most 4 UTF-8 bytes each: always within the 763-byte limit.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=100)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)
algorithm_entries = st.builds(AlgorithmEntry, u16, st.binary(max_size=12))
unregistered_codes = u16.filter(lambda code: registered_attribute(code) is None)

ATTRIBUTE_STRATEGIES: dict[type[Attribute], st.SearchStrategy[Attribute]] = {
    stun.MappedAddress: st.builds(stun.MappedAddress, addresses),
    stun.XorMappedAddress: st.builds(stun.XorMappedAddress, addresses),
    stun.AlternateServer: st.builds(stun.AlternateServer, addresses),
    stun.ResponseOrigin: st.builds(stun.ResponseOrigin, addresses),
    stun.OtherAddress: st.builds(stun.OtherAddress, addresses),
    stun.Username: st.builds(stun.Username, texts),
    stun.Realm: st.builds(stun.Realm, texts),
    stun.Nonce: st.builds(stun.Nonce, texts),
    stun.Software: st.builds(stun.Software, texts),
    stun.AlternateDomain: st.builds(stun.AlternateDomain, texts),
    stun.Userhash: st.builds(stun.Userhash, st.binary(min_size=32, max_size=32)),
    stun.Padding: st.builds(stun.Padding, st.binary(max_size=64)),
    stun.Priority: st.builds(stun.Priority, st.integers(1, 0xFFFFFFFF)),
    stun.UseCandidate: st.just(stun.UseCandidate()),
    stun.IceControlled: st.builds(stun.IceControlled, u64),
    stun.IceControlling: st.builds(stun.IceControlling, u64),
    stun.ChangeRequest: st.builds(stun.ChangeRequest, st.booleans(), st.booleans()),
    stun.ResponsePort: st.builds(stun.ResponsePort, u16),
    stun.ErrorCode: st.builds(stun.ErrorCode, st.integers(300, 699), texts),
    stun.UnknownAttributes: st.lists(u16, max_size=8).map(
        lambda types: stun.UnknownAttributes(tuple(types))
    ),
    stun.PasswordAlgorithm: st.builds(stun.PasswordAlgorithm, u16, st.binary(max_size=12)),
    stun.PasswordAlgorithms: st.lists(algorithm_entries, max_size=4).map(
        lambda entries: stun.PasswordAlgorithms(tuple(entries))
    ),
    stun.MessageIntegrity: st.builds(stun.MessageIntegrity, st.binary(min_size=20, max_size=20)),
    stun.MessageIntegritySha256: st.sampled_from((16, 20, 24, 28, 32)).flatmap(
        lambda n: st.builds(stun.MessageIntegritySha256, st.binary(min_size=n, max_size=n))
    ),
    stun.Fingerprint: st.builds(stun.Fingerprint, u32),
}
unknown_attributes = st.builds(stun.UnknownAttribute, unregistered_codes, st.binary(max_size=40))
any_attribute = st.one_of(*ATTRIBUTE_STRATEGIES.values(), unknown_attributes)
content_attributes = st.one_of(
    *(s for cls, s in ATTRIBUTE_STRATEGIES.items() if cls not in SECURITY_CLASSES),
    unknown_attributes,
)
transaction_ids = st.binary(min_size=12, max_size=12)
methods = st.one_of(st.sampled_from(Method), st.integers(0, 0xFFF))
messages = st.builds(
    Message,
    methods,
    st.sampled_from(MessageClass),
    transaction_ids,
    st.lists(content_attributes, max_size=8),
)
encode_options = st.fixed_dictionaries(
    {},
    optional={
        "key": st.binary(max_size=40),
        "integrity": st.sampled_from(Integrity),
        "sha256_length": st.sampled_from((16, 20, 24, 28, 32)),
        "fingerprint": st.booleans(),
        "padding": st.binary(min_size=1, max_size=1),
    },
)


def test_every_stun_attribute_has_a_strategy() -> None:
    own = {cls for cls in REGISTERED if cls.__module__.startswith("stun.")}
    assert own == set(ATTRIBUTE_STRATEGIES)


# --------------------------------------------------------------------------- round trips


@FAST
@given(any_attribute, transaction_ids)
def test_attribute_value_round_trip(attribute: Attribute, transaction_id: bytes) -> None:
    value = attribute.encode_value(transaction_id)
    assert len(value) <= 0xFFFF
    kind = registered_attribute(attribute.attr_type)
    if kind is None:
        assert isinstance(attribute, stun.UnknownAttribute)
        assert value == attribute.value
    else:
        assert kind.decode_value(value, transaction_id) == attribute


@FAST
@given(messages, encode_options)
def test_message_round_trip(message: Message, options: dict[str, object]) -> None:
    data = message.encode(**options)  # type: ignore[arg-type]
    assert len(data) % 4 == 0
    decoded = Message.decode(data)
    assert decoded.content_attributes == message.attributes
    assert (
        Message(
            decoded.method,
            decoded.message_class,
            decoded.transaction_id,
            decoded.content_attributes,
        )
        == message
    )
    assert decoded.unknown_required == tuple(
        a.attr_type
        for a in message.attributes
        if isinstance(a, stun.UnknownAttribute) and a.attr_type < 0x8000
    )
    assert decoded.ignored_count == 0
    key = options.get("key")
    if isinstance(key, bytes):
        assert decoded.has_integrity
        assert decoded.check_integrity(key)
        assert not decoded.check_integrity(key + b"x")
    else:
        assert not decoded.has_integrity
    assert decoded.check_fingerprint() is bool(options.get("fingerprint", False))
    # Re-encoding what we decoded, with the same options, gives the same bytes.
    rebuilt = Message(
        decoded.method, decoded.message_class, decoded.transaction_id, decoded.content_attributes
    )
    assert rebuilt.encode(**options) == data  # type: ignore[arg-type]


# --------------------------------------------------------------------------- malformed input


def decode_or_reject(data: bytes) -> Message | None:
    """Decode, and exercise what a receiver does next; anything but DecodeError fails the test."""
    try:
        message = Message.decode(data, allow_classic=len(data) % 2 == 0)
    except DecodeError:
        return None
    assert isinstance(message.check_integrity(b"key"), bool)
    assert isinstance(message.check_fingerprint(), bool)
    for kind in REGISTERED:  # values decode() left to be built when read: they must build
        assert message.has(kind) is (message.get(kind) is not None)
    assert repr(message)
    message.error_response(420)
    return message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    decode_or_reject(data)


def framed(attributes: list[tuple[int, int, bytes]], transaction_id: bytes) -> bytes:
    body = b"".join(
        struct.pack("!HH", code, length) + value + bytes(-len(value) % 4)
        for code, length, value in attributes
    )
    return struct.pack("!HHI12s", 0x0001, len(body), stun.MAGIC_COOKIE, transaction_id) + body


registered_codes = st.sampled_from([cls.TYPE for cls in REGISTERED])
raw_attribute = st.tuples(st.one_of(registered_codes, u16), st.binary(max_size=40)).flatmap(
    lambda pair: st.tuples(
        st.just(pair[0]),
        st.one_of(st.just(len(pair[1])), u16),  # usually honest, sometimes lying
        st.just(pair[1]),
    )
)


@FAST
@given(st.lists(raw_attribute, max_size=6), transaction_ids)
def test_decode_framed_garbage_attributes_raises_only_decode_error(
    attributes: list[tuple[int, int, bytes]], transaction_id: bytes
) -> None:
    decode_or_reject(framed(attributes, transaction_id))


def attribute_offsets(data: bytes) -> list[int]:
    offsets = []
    offset = 20
    while offset + 4 <= len(data):
        offsets.append(offset)
        length = struct.unpack_from("!H", data, offset + 2)[0]
        offset += 4 + length + (-length % 4)
    return offsets


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)),
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 8)),
    st.tuples(st.just("truncate"), st.integers(0, 2**16)),
    st.tuples(st.just("attribute-length"), st.integers(0, 2**16), u16),
)


def mutate(data: bytes, mutations: list[tuple[object, ...]], fix_length: bool) -> bytes:
    buffer = bytearray(data)
    for kind, where, *rest in mutations:
        assert isinstance(where, int)
        position = where % (len(buffer) + 1)
        if kind == "flip" and buffer:
            (bit,) = rest
            assert isinstance(bit, int)
            buffer[position % len(buffer)] ^= 1 << bit
        elif kind == "insert":
            (inserted,) = rest
            assert isinstance(inserted, bytes)
            buffer[position:position] = inserted
        elif kind == "delete":
            (count,) = rest
            assert isinstance(count, int)
            del buffer[position : position + count]
        elif kind == "truncate":
            del buffer[position:]
        elif kind == "attribute-length":
            offsets = attribute_offsets(bytes(buffer))
            if offsets:
                (length,) = rest
                assert isinstance(length, int)
                struct.pack_into("!H", buffer, offsets[where % len(offsets)] + 2, length)
    if fix_length and len(buffer) >= 20:
        struct.pack_into("!H", buffer, 2, (len(buffer) - 20) & 0xFFFF)
    return bytes(buffer)


@settings(max_examples=300, deadline=None)
@given(messages, encode_options, st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_mutated_messages_decode_or_raise_decode_error(
    message: Message,
    options: dict[str, object],
    mutations: list[tuple[object, ...]],
    fix_length: bool,
) -> None:
    data = message.encode(**options)  # type: ignore[arg-type]
    decode_or_reject(mutate(data, mutations, fix_length))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_every_registered_attribute_decodes_garbage_or_raises_decode_error(
    data: st.DataObject,
) -> None:
    for kind in REGISTERED:
        value = data.draw(st.binary(max_size=64), label=kind.NAME)
        transaction_id = data.draw(transaction_ids)
        try:
            attribute = kind.decode_value(value, transaction_id)
        except DecodeError:
            continue
        # What decodes re-encodes to something that decodes the same, or is refused locally.
        try:
            again = attribute.encode_value(transaction_id)
        except LocalProtocolError:
            continue
        assert kind.decode_value(again, transaction_id) == attribute
