"""ice.dns: the DNS message codec behind mDNS lookups — exact bytes, compression, mDNS class bits,
NSEC records (RFC 4034 §4, RFC 6762 §6.1), sections, malformed input, and hypothesis round
trips."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ice import DecodeError, LocalProtocolError
from ice.dns import AddressRecord, DnsMessage, NsecRecord, Question, Record, RecordType

#: Four labels of 63 octets: 257 octets on the wire, over the 255 limit.
LONG_NAME = b"".join(b"\x3f" + letter * 63 for letter in (b"a", b"b", b"c", b"d")) + b"\x00"
NAME = b"\x24" + b"0b5a7c1e-0000-4000-8000-000000000000" + b"\x05local\x00"


def header(
    id: int = 0, flags: int = 0, qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", id, flags, qd, an, ns, ar)


def test_query_bytes() -> None:
    query = DnsMessage(id=0x1234, questions=(Question("a.local", RecordType.A),))
    assert query.encode() == header(0x1234, qd=1) + b"\x01a\x05local\x00" + b"\x00\x01\x00\x01"


def test_question_unicast_bit_and_record_cache_flush_bit() -> None:
    message = DnsMessage(
        response=True,
        authoritative=True,
        questions=(Question("a.local", RecordType.AAAA, unicast_response=True),),
        answers=(AddressRecord("a.local", "::1", ttl=120, cache_flush=True),),
    )
    data = message.encode()
    assert data[:4] == b"\x00\x00\x84\x00"  # QR and AA
    assert data[12 + 9 : 12 + 13] == b"\x00\x1c\x80\x01"  # AAAA, QU + IN
    assert data[-16 - 10 : -16] == b"\x00\x1c\x80\x01\x00\x00\x00\x78\x00\x10"
    assert DnsMessage.decode(data) == message


def test_compressed_records_sections_and_other_records_skipped() -> None:
    question = NAME + b"\x00\x01\x00\x01"
    pointer = b"\xc0\x0c"  # to the question's name, at offset 12
    txt = pointer + struct.pack("!HHIH", 16, 1, 120, 3) + b"\x02hi"
    chaos = pointer + struct.pack("!HHIH", 1, 3, 120, 4) + bytes(4)  # class CH, not IN
    address = pointer + struct.pack("!HHIH", 1, 0x8001, 120, 4) + bytes([192, 0, 2, 7])
    probe = pointer + struct.pack("!HHIH", 1, 1, 120, 4) + bytes([192, 0, 2, 9])  # authority
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)  # EDNS, as dig adds (RFC 6891)
    data = header(flags=0x8400, qd=1, an=1, ns=1, ar=3) + question + txt + probe
    data += chaos + address + opt
    message = DnsMessage.decode(data)
    assert message.response and message.authoritative
    assert message.questions == (
        Question("0b5a7c1e-0000-4000-8000-000000000000.local", RecordType.A),
    )
    assert message.answers == ()
    (record,) = message.additionals
    assert isinstance(record, AddressRecord)
    assert record.address == "192.0.2.7" and record.cache_flush and record.type is RecordType.A
    assert record.name == message.questions[0].name


def test_nsec_restricted_form_bytes() -> None:
    """RFC 6762 §6.1: the next name is the record's own, one window, 1-32 bitmap octets."""
    name = "0b5a7c1e-0000-4000-8000-000000000000.local"
    only_a = NsecRecord.negative(name, [RecordType.A])
    only_aaaa = NsecRecord.negative(name, [RecordType.AAAA], ttl=10)
    data = DnsMessage(response=True, answers=(only_a,), additionals=(only_aaaa,)).encode()
    tail = struct.pack("!HHIH", 47, 0x8001, 120, len(NAME) + 3) + NAME + b"\x00\x01\x40"
    assert data[12 : 12 + len(NAME) + 10 + len(NAME) + 3] == NAME + tail
    assert data.endswith(NAME + b"\x00\x04\x00\x00\x00\x08")  # AAAA = 28: octet 3, bit 4
    assert data[6:12] == b"\x00\x01\x00\x00\x00\x01"
    message = DnsMessage.decode(data)
    assert message.answers == (only_a,) and message.additionals == (only_aaaa,)
    assert only_a.next_name == name and only_a.cache_flush and only_a.type is RecordType.NSEC


def test_nsec_with_several_windows_and_a_compressed_next_name() -> None:
    """Any RFC 4034 form parses: windows in order, a compressed next name (RFC 6762 §18.14)."""
    bitmaps = b"\x00\x01\x40" + b"\x01\x01\x40" + b"\xff\x20" + bytes(31) + b"\x01"
    rdata = b"\xc0\x0c" + bitmaps
    data = header(flags=0x8400, an=1) + NAME + struct.pack("!HHIH", 47, 1, 120, len(rdata))
    (record,) = DnsMessage.decode(data + rdata).answers
    assert record == NsecRecord(
        "0b5a7c1e-0000-4000-8000-000000000000.local",
        "0b5a7c1e-0000-4000-8000-000000000000.local",
        frozenset({1, 257, 65535}),
    )
    # Written uncompressed, the bitmaps come out the same.
    assert record.rdata() == NAME + bitmaps


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" * 11, "header"),
        (header(qd=1) + b"\x05loc", "past the end"),
        (header(qd=1) + NAME + b"\x00\x01", "truncated"),
        (header(qd=1) + b"\xc0\x0c" + b"\x00\x01\x00\x01", "does not point back"),
        (header(qd=1) + b"\x01a\xc0\x0c" + b"\x00\x01\x00\x01", "does not point back"),
        (header(qd=1) + b"\x40a\x00" + b"\x00\x01\x00\x01", "reserved label"),
        (header(qd=1) + b"\x02\xff\xfe\x00" + b"\x00\x01\x00\x01", "UTF-8"),
        (header(qd=1) + b"\x03a.b\x00" + b"\x00\x01\x00\x01", "dot"),
        (header(qd=1) + LONG_NAME + b"\x00\x01\x00\x01", "255"),
        (header(an=1) + NAME + struct.pack("!HHIH", 1, 1, 1, 5) + bytes(5), "A record"),
        (header(an=1) + NAME + struct.pack("!HHIH", 28, 1, 1, 4) + bytes(4), "AAAA record"),
        (header(an=1) + NAME + struct.pack("!HHIH", 1, 1, 1, 4) + bytes(3), "past the end"),
        (header(an=1) + NAME + struct.pack("!HHIH", 47, 1, 1, 3) + b"\x00\x00\x00", "0 octets"),
        (header(an=1) + NAME + struct.pack("!HHIH", 47, 1, 1, 3) + b"\x00\x00\x21", "33 oct"),
        (header(an=1) + NAME + struct.pack("!HHIH", 47, 1, 1, 4) + b"\x00\x00\x02\x40", "2 oct"),
        (header(an=1) + NAME + struct.pack("!HHIH", 47, 1, 1, 2) + b"\x00\x00", "header trunc"),
        (
            header(an=1) + NAME + struct.pack("!HHIH", 47, 1, 1, 7)
            + b"\x00\x00\x01\x40\x00\x01\x40",
            "window 0 out of order",
        ),
        (header(an=1) + NAME + struct.pack("!HHIH", 47, 1, 1, 2) + b"\x01a\x00", "past the end"),
        (header(flags=0x2800), "opcode"),
        (header(flags=0x8003), "response code"),
    ],
)
def test_malformed_messages_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        DnsMessage.decode(data)


def test_building_bad_values_raises_local_errors() -> None:
    with pytest.raises(LocalProtocolError, match="label"):
        Question("a..local", RecordType.A)
    with pytest.raises(LocalProtocolError, match="label"):
        Question("x" * 64 + ".local", RecordType.A)
    with pytest.raises(LocalProtocolError, match="255"):
        Question(".".join(["x" * 60] * 5), RecordType.A)
    with pytest.raises(LocalProtocolError, match="IP address"):
        AddressRecord("a.local", "not-an-ip")
    with pytest.raises(LocalProtocolError, match="TTL"):
        AddressRecord("a.local", "192.0.2.1", ttl=-1)
    with pytest.raises(LocalProtocolError, match="ID"):
        DnsMessage(id=70000)


# --------------------------------------------------------------------------- properties

labels = st.text(st.characters(codec="utf-8", exclude_characters="."), min_size=1).filter(
    lambda label: len(label.encode()) <= 50
)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)
questions = st.builds(Question, names, st.integers(0, 0xFFFF), st.booleans())
record_types = st.one_of(st.sampled_from(RecordType), st.integers(0, 0xFFFF))
address_records = st.builds(
    AddressRecord,
    names,
    st.ip_addresses().map(str),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
nsec_records = st.builds(
    NsecRecord,
    names,
    st.one_of(names, st.just("")),
    st.frozensets(record_types, max_size=6),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
records = st.lists(st.one_of(address_records, nsec_records), max_size=4).map(tuple)


def dns_messages(
    questions: st.SearchStrategy[Question], records: st.SearchStrategy[tuple[Record, ...]]
) -> st.SearchStrategy[DnsMessage]:
    """Messages with any header, up to four questions, and records in both sections."""
    return st.builds(
        DnsMessage,
        st.integers(0, 0xFFFF),
        st.booleans(),
        st.booleans(),
        st.lists(questions, max_size=4).map(tuple),
        records,
        records,
    )


messages = dns_messages(questions, records)


@given(messages)
def test_round_trip(message: DnsMessage) -> None:
    assert DnsMessage.decode(message.encode()) == message


def decodes_or_is_rejected(data: bytes) -> None:
    """Malformed input raises DecodeError and nothing else; what parses survives a round trip."""
    try:
        message = DnsMessage.decode(data)
    except DecodeError:
        return
    assert DnsMessage.decode(message.encode()) == message


@given(messages, st.data())
def test_truncated_messages_raise_only_decode_error(
    message: DnsMessage, data: st.DataObject
) -> None:
    encoded = message.encode()
    decodes_or_is_rejected(encoded[: data.draw(st.integers(0, len(encoded)))])


@given(st.binary(max_size=600))
def test_garbage_raises_only_decode_error(data: bytes) -> None:
    decodes_or_is_rejected(data)


@given(st.binary(min_size=12, max_size=80), st.integers(0, 0x3FFF))
def test_garbage_with_pointers_terminates(tail: bytes, target: int) -> None:
    decodes_or_is_rejected(header(qd=3, an=3) + struct.pack("!H", 0xC000 | target) + tail)
