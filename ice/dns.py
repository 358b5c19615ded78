"""Just enough of the DNS message format (RFC 1035 §4.1) for multicast DNS address lookups.

ICE peers hide host addresses behind ``<uuid>.local`` names (RFC 8828's privacy concern, the
mmusic "mDNS ICE candidates" draft), so an agent must ask for the A (RFC 1035 §3.4.1) and AAAA
(RFC 3596) records of such a name and answer for its own. This module builds and parses those
messages, sans-IO: queries with their questions, and responses with address records. Everything
else a message may carry (other record types, other classes) is skipped while parsing.

Multicast DNS (RFC 6762) reuses two bits: the top bit of a question's class asks for a unicast
response (§5.4), the top bit of a record's class means "cache flush" (§10.2). Names are UTF-8
(§16) and compared case-insensitively by the caller.

:meth:`DnsMessage.decode` raises only :class:`~ice.DecodeError` on malformed input: truncation,
reserved label types, compression pointers that do not point backwards (loops), over-long names,
address records of the wrong size, opcodes or response codes mDNS does not use (§18.3, §18.11).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from .errors import DecodeError, LocalProtocolError


class RecordType(enum.IntEnum):
    """The record types this codec understands."""

    A = 1
    AAAA = 28


#: The Internet class (RFC 1035 §3.2.4); the only one mDNS uses.
CLASS_IN = 1
#: The top bit of a class: unicast-response in questions, cache-flush in records (RFC 6762).
_TOP_BIT = 0x8000
_QR = 0x8000
_AA = 0x0400
_OPCODE_MASK = 0x7800
_RCODE_MASK = 0x000F
MAX_NAME_LENGTH = 255  # octets on the wire (RFC 1035 §2.3.4)
MAX_LABEL_LENGTH = 63

_HEADER = struct.Struct("!HHHHHH")
_QUESTION_TAIL = struct.Struct("!HH")
_RECORD_TAIL = struct.Struct("!HHIH")


@dataclass(frozen=True, slots=True)
class Question:
    """One question: a name and a record type (any 16-bit type; this codec answers A and AAAA)."""

    name: str
    type: int
    #: The querier asks for a unicast response (RFC 6762 §5.4, the "QU" bit).
    unicast_response: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not 0 <= self.type <= 0xFFFF:
            raise LocalProtocolError(f"record type {self.type} out of range")


@dataclass(frozen=True, slots=True)
class AddressRecord:
    """An A or AAAA record: ``name`` has IP address ``address`` (normalised text)."""

    name: str
    address: str
    ttl: int = 120
    #: The record replaces what caches hold for this name and type (RFC 6762 §10.2).
    cache_flush: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            raise LocalProtocolError(f"{self.address!r} is not an IP address") from None
        if not 0 <= self.ttl <= 0xFFFF_FFFF:
            raise LocalProtocolError(f"TTL {self.ttl} out of range")
        object.__setattr__(self, "address", ip.compressed)

    @property
    def type(self) -> RecordType:
        return RecordType.AAAA if ":" in self.address else RecordType.A


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """A DNS query or response with address records only."""

    id: int = 0
    response: bool = False
    authoritative: bool = False
    questions: tuple[Question, ...] = ()
    #: Address records, from every record section when parsed; encoded as answers.
    answers: tuple[AddressRecord, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 0xFFFF:
            raise LocalProtocolError(f"message ID {self.id} out of range")
        if len(self.questions) > 0xFFFF or len(self.answers) > 0xFFFF:
            raise LocalProtocolError("at most 65535 questions and answers")

    def encode(self) -> bytes:
        """The message in wire format, names uncompressed."""
        flags = (_QR if self.response else 0) | (_AA if self.authoritative else 0)
        parts = [_HEADER.pack(self.id, flags, len(self.questions), len(self.answers), 0, 0)]
        for question in self.questions:
            qclass = CLASS_IN | (_TOP_BIT if question.unicast_response else 0)
            parts += [_encode_name(question.name), _QUESTION_TAIL.pack(question.type, qclass)]
        for record in self.answers:
            rdata = ipaddress.ip_address(record.address).packed
            rclass = CLASS_IN | (_TOP_BIT if record.cache_flush else 0)
            parts += [
                _encode_name(record.name),
                _RECORD_TAIL.pack(record.type, rclass, record.ttl, len(rdata)),
                rdata,
            ]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> DnsMessage:
        """Parse a message; raises only :class:`~ice.DecodeError`. Bytes after the last record
        are ignored, as are records other than A/AAAA of class IN."""
        if len(data) < _HEADER.size:
            raise DecodeError(f"DNS: {len(data)} bytes, shorter than the 12-byte header")
        message_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        if flags & _OPCODE_MASK:
            raise DecodeError(f"DNS: opcode {(flags & _OPCODE_MASK) >> 11} is not a query")
        if flags & _RCODE_MASK:
            raise DecodeError(f"DNS: response code {flags & _RCODE_MASK}")
        offset = _HEADER.size
        questions = []
        for _ in range(qdcount):
            name, offset = _decode_name(data, offset)
            qtype, qclass = _unpack(_QUESTION_TAIL, data, offset, "question")
            offset += _QUESTION_TAIL.size
            questions.append(Question(name, qtype, bool(qclass & _TOP_BIT)))
        answers = []
        for _ in range(ancount + nscount + arcount):
            name, offset = _decode_name(data, offset)
            rtype, rclass, ttl, rdlength = _unpack(_RECORD_TAIL, data, offset, "record")
            offset += _RECORD_TAIL.size
            rdata = data[offset : offset + rdlength]
            if len(rdata) != rdlength:
                raise DecodeError(f"DNS: record data of {rdlength} bytes runs past the end")
            offset += rdlength
            if rclass & ~_TOP_BIT != CLASS_IN or rtype not in (RecordType.A, RecordType.AAAA):
                continue
            expected = 4 if rtype == RecordType.A else 16
            if rdlength != expected:
                raise DecodeError(f"DNS: {RecordType(rtype).name} record of {rdlength} bytes")
            address = ipaddress.ip_address(rdata).compressed
            answers.append(AddressRecord(name, address, ttl, bool(rclass & _TOP_BIT)))
        return cls(
            message_id,
            bool(flags & _QR),
            bool(flags & _AA),
            tuple(questions),
            tuple(answers),
        )


def _unpack(layout: struct.Struct, data: bytes, offset: int, what: str) -> tuple[int, ...]:
    if offset + layout.size > len(data):
        raise DecodeError(f"DNS: {what} truncated")
    return layout.unpack_from(data, offset)


def _labels(name: str) -> list[bytes]:
    text = name[:-1] if name.endswith(".") else name
    return [label.encode() for label in text.split(".")] if text else []


def _check_name(name: str) -> None:
    labels = _labels(name)
    if any(not 1 <= len(label) <= MAX_LABEL_LENGTH for label in labels):
        raise LocalProtocolError(f"DNS name {name!r}: every label must be 1-63 octets")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_LENGTH:
        raise LocalProtocolError(f"DNS name {name[:40]!r}...: longer than 255 octets")


def _encode_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in _labels(name)) + b"\x00"


def _decode_name(data: bytes, offset: int) -> tuple[str, int]:
    """Read a possibly compressed name (RFC 1035 §4.1.4); return it and the offset after it.

    A pointer must point before everything this name has read so far, so following pointers
    always moves backwards and ends.
    """
    labels: list[str] = []
    length = 1
    end: int | None = None
    position = lowest = offset
    while True:
        if position >= len(data):
            raise DecodeError("DNS: name runs past the end")
        size = data[position]
        if size == 0:
            position += 1
            break
        kind = size & 0xC0
        if kind == 0xC0:
            if position + 2 > len(data):
                raise DecodeError("DNS: compression pointer truncated")
            target = ((size & 0x3F) << 8) | data[position + 1]
            if target >= lowest:
                raise DecodeError(f"DNS: compression pointer to {target} does not point back")
            if end is None:
                end = position + 2
            position = lowest = target
            continue
        if kind:
            raise DecodeError(f"DNS: reserved label type {kind >> 6}")
        label = data[position + 1 : position + 1 + size]
        if len(label) != size:
            raise DecodeError("DNS: label runs past the end")
        length += size + 1
        if length > MAX_NAME_LENGTH:
            raise DecodeError("DNS: name longer than 255 octets")
        try:
            text = label.decode()
        except UnicodeDecodeError:
            raise DecodeError("DNS: label is not UTF-8") from None
        if "." in text:
            raise DecodeError("DNS: label contains a dot")
        labels.append(text)
        position += 1 + size
    return ".".join(labels), position if end is None else end
