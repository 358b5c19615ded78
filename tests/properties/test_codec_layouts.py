"""Hypothesis properties of decoding with a cached layout and values built when read (stun.layout).

A value that ``Attribute.WIRE_SIZES`` says is checked by its length alone must decode for any bytes
of those lengths and fail for any other; and a message decoded through a layout cached from a
similar message must decode exactly as a fresh walk does — the same attributes, counts and checks,
or the same refusal.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stun import (
    Address,
    Attribute,
    DecodeError,
    IceControlling,
    Message,
    MessageClass,
    Method,
    Priority,
    Software,
    Username,
)
from stun.attributes import _LAYOUT_CACHE, _SHARED_VALUES, MAX_SHARED_VALUES
from stun.layout import KEEP_AFTER, MAX_CACHED_LAYOUTS, RETRY_AFTER, forget_layouts
from turn import Data, XorPeerAddress

from .test_codec_properties import (
    FAST,
    REGISTERED,
    encode_options,
    messages,
    mutate,
    mutation,
    transaction_ids,
)

LENGTH_CHECKED = [kind for kind in REGISTERED if kind.WIRE_SIZES is not None]


def test_some_attributes_are_checked_by_length_alone() -> None:
    assert {kind.NAME for kind in LENGTH_CHECKED} >= {"PRIORITY", "ICE-CONTROLLING", "FINGERPRINT"}


@FAST
@given(st.data(), transaction_ids)
def test_wire_sizes_are_exactly_the_lengths_decode_value_accepts(
    data: st.DataObject, transaction_id: bytes
) -> None:
    for kind in LENGTH_CHECKED:
        assert kind.WIRE_SIZES is not None
        size = data.draw(st.one_of(st.sampled_from(sorted(kind.WIRE_SIZES)), st.integers(0, 40)))
        value = data.draw(st.binary(min_size=size, max_size=size), label=kind.NAME)
        try:
            kind.decode_value(value, transaction_id)
        except DecodeError:
            assert size not in kind.WIRE_SIZES
        else:
            assert size in kind.WIRE_SIZES


def outcome(data: bytes, key: bytes, read_first: list[type[Attribute]]) -> object:
    """Everything a receiver learns from ``data``; reads ``read_first`` before the list."""
    try:
        message = Message.decode(data)
    except DecodeError as error:
        return ("refused", str(error))
    read = [message.get(kind) for kind in read_first]
    return (
        read,
        message.attributes,
        message.ignored_count,
        message.unknown_required,
        message.has_integrity,
        message.check_integrity(key),
        message.has_fingerprint,
        message.check_fingerprint(),
        [message.get(kind) for kind in read_first],
    )


same_length_mutations = st.lists(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)), min_size=1, max_size=3
)


@settings(max_examples=200, deadline=None)
@given(
    messages,
    encode_options,
    st.one_of(same_length_mutations, st.lists(mutation, min_size=1, max_size=3)),
    st.lists(st.sampled_from(REGISTERED), max_size=4),
)
def test_a_cached_layout_decodes_as_a_fresh_walk(
    message: Message,
    options: dict[str, object],
    mutations: list[tuple[object, ...]],
    read_first: list[type[Attribute]],
) -> None:
    original = message.encode(**options)  # type: ignore[arg-type]
    changed = mutate(original, mutations, fix_length=True)
    key = options.get("key")
    key = key if isinstance(key, bytes) else b"key"
    forget_layouts()
    fresh = outcome(changed, key, read_first)
    forget_layouts()
    # The KEEP_AFTER-th leaves its layout, the next two keep the run of its shared values: the
    # next match is a hit on both.
    for _ in range(KEEP_AFTER + 2):
        outcome(original, key, read_first)
    assert outcome(changed, key, read_first) == fresh
    forget_layouts()
    for _ in range(KEEP_AFTER + 3):  # walked, kept, its run kept, then read through them
        assert outcome(changed, key, read_first) == fresh


def send_indication(data: bytes) -> bytes:
    return Message(
        Method.SEND,
        MessageClass.INDICATION,
        bytes(12),
        [XorPeerAddress(Address("192.0.2.7", 5000)), Data(data)],
    ).encode(fingerprint=True)


def test_a_repeated_shape_is_decoded_through_one_confirmed_layout() -> None:
    forget_layouts()
    message = send_indication(b"x" * 100)
    *walked, kept, hit = (Message.decode(message) for _ in range(KEEP_AFTER + 1))
    (cached,) = _LAYOUT_CACHE.values()
    assert cached.hits == 1
    assert all(message._layout is not cached.layout for message in walked)  # they left a count
    assert kept._layout is hit._layout is cached.layout


def test_shapes_that_do_not_repeat_rarely_cost_a_header_struct_and_a_steady_one_recovers() -> None:
    # DATA of 97-100 bytes pads to the same message length: one key, four header sequences.
    forget_layouts()
    compiled = 0
    sizes = (97, 98, 99, 100, 100, 99, 98, 97)
    for round_ in range(50):
        for size in sizes:
            message = Message.decode(send_indication(bytes([round_]) * size))
            assert message.get(Data) == Data(bytes([round_]) * size)
            for cached in _LAYOUT_CACHE.values():  # none, or the key's
                compiled += cached.hits == cached.misses == 0
    assert 1 <= compiled <= 50 * len(sizes) // RETRY_AFTER + 1
    for _ in range(RETRY_AFTER + 2):  # at most RETRY_AFTER + 1 walked, then kept, then a hit
        Message.decode(send_indication(b"x" * 99))
    (cached,) = _LAYOUT_CACHE.values()
    assert cached.hits > 0


def test_the_cache_forgets_its_oldest_layout_not_all_of_them() -> None:
    forget_layouts()
    sizes = range(0, 4 * (MAX_CACHED_LAYOUTS + 10), 4)
    for size in sizes:
        for _ in range(KEEP_AFTER):
            newest = Message.decode(send_indication(bytes(size)))
            assert newest.get(Data) == Data(bytes(size))
    assert len(_LAYOUT_CACHE) == MAX_CACHED_LAYOUTS
    kept = [layout.layout.ends[1] - layout.layout.starts[1] for layout in _LAYOUT_CACHE.values()]
    assert kept == list(sizes[10:])  # the DATA lengths of the newest keys, oldest first


def test_a_full_cache_that_forgets_layouts_unused_stops_keeping_them() -> None:
    forget_layouts()
    for size in range(0, 4 * (MAX_CACHED_LAYOUTS + 1), 4):  # the first layout is forgotten
        for _ in range(KEEP_AFTER):
            Message.decode(send_indication(bytes(size)))
    newest_first = list(_LAYOUT_CACHE.values())
    for _ in range(KEEP_AFTER + 1):
        assert Message.decode(send_indication(b"")).get(Data) == Data(b"")
    assert list(_LAYOUT_CACHE.values()) == newest_first  # walked, nothing kept or evicted


def check(username: str, priority: int, tie_breaker: int) -> bytes:
    return Message(
        Method.BINDING,
        MessageClass.REQUEST,
        bytes(12),
        [Username(username), Priority(priority), IceControlling(tie_breaker)],
    ).encode(key=b"key", fingerprint=True)


def test_recurring_values_are_shared_and_the_table_is_bounded() -> None:
    forget_layouts()
    first, second = (Message.decode(check("a:b", 7, 9)) for _ in range(2))
    for kind in (Username, Priority, IceControlling):
        assert first.get(kind) is second.get(kind)
    for n in range(2 * MAX_SHARED_VALUES):  # a peer that never repeats itself
        message = Message.decode(check(f"a:{n}", n + 1, n))
        assert message.get(Username) == Username(f"a:{n}")
        assert message.get(Priority) == Priority(n + 1)
        assert message.get(IceControlling) == IceControlling(n)
        assert len(_SHARED_VALUES) <= MAX_SHARED_VALUES


def test_a_shared_value_is_never_another_types() -> None:
    # USERNAME and SOFTWARE with the same text stay apart: the attribute header is part of what
    # values are shared by.
    forget_layouts()
    for _ in range(KEEP_AFTER + 1):  # walked, kept, then through the kept layout
        message = Message.decode(
            Message(
                Method.BINDING, MessageClass.REQUEST, bytes(12), [Username("ab"), Software("ab")]
            ).encode()
        )
        assert message.get(Software) == Software("ab")
        assert message.get(Username) == Username("ab")
