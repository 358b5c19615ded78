"""Just enough of the DNS message format (RFC 1035 §4.1) for multicast DNS address lookups.

ICE peers hide host addresses behind ``<uuid>.local`` names (RFC 8828's privacy concern, the
mmusic "mDNS ICE candidates" draft), so an agent must ask for the A (RFC 1035 §3.4.1) and AAAA
(RFC 3596) records of such a name and answer for its own. This module builds and parses those
messages, sans-IO: queries with their questions, and responses with address records and the NSEC
records (RFC 4034 §4) by which a Multicast DNS responder says that a name has no record of a type
(RFC 6762 §6.1). Everything else a message may carry (other record types, other classes, the
authority section) is skipped while parsing.

Multicast DNS (RFC 6762) reuses two bits: the top bit of a question's class asks for a unicast
response (§5.4), the top bit of a record's class means "cache flush" (§10.2). Names are UTF-8
(§16) and compared case-insensitively by the caller.

:meth:`DnsMessage.decode` raises only :class:`~ice.DecodeError` on malformed input: truncation,
reserved label types, compression pointers that do not point backwards (loops), over-long names,
address records of the wrong size, NSEC type bitmaps out of order or of a bad length, opcodes or
response codes mDNS does not use (§18.3, §18.11).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import DecodeError, LocalProtocolError


class RecordType(enum.IntEnum):
    """The record types this codec understands, and the question type "any"."""

    A = 1
    AAAA = 28
    NSEC = 47
    #: A question for every record of a name (RFC 1035 §3.2.3); never a record's type.
    ANY = 255


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
#: A type bitmap window covers 256 types in at most 32 octets (RFC 4034 §4.1.2).
_WINDOW_OCTETS = 32

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
        _check_ttl(self.ttl)
        object.__setattr__(self, "address", ip.compressed)

    @property
    def type(self) -> RecordType:
        return RecordType.AAAA if ":" in self.address else RecordType.A

    def rdata(self) -> bytes:
        """The record's data on the wire: the address's 4 or 16 octets."""
        return ipaddress.ip_address(self.address).packed


@dataclass(frozen=True, slots=True)
class NsecRecord:
    """An NSEC record (RFC 4034 §4): the record types ``name`` has; Multicast DNS uses it to say
    that the name has no record of any other type (RFC 6762 §6.1).

    mDNS responders send the restricted form of RFC 6762 §6.1: ``next_name`` is the record's own
    name and every type is below 256 (one bitmap window). Any RFC 4034 form is parsed.
    """

    name: str
    next_name: str
    types: frozenset[int]
    ttl: int = 120
    cache_flush: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_name(self.next_name)
        _check_ttl(self.ttl)
        object.__setattr__(self, "types", frozenset(self.types))
        if any(not 0 <= rtype <= 0xFFFF for rtype in self.types):
            raise LocalProtocolError("NSEC: record types are 0-65535")

    @classmethod
    def negative(cls, name: str, types: Iterable[int], ttl: int = 120) -> NsecRecord:
        """The restricted form that says ``name`` has only ``types`` (RFC 6762 §6.1), as a unique
        record (cache-flush set)."""
        return cls(name, name, frozenset(types), ttl, cache_flush=True)

    @property
    def type(self) -> RecordType:
        return RecordType.NSEC

    def rdata(self) -> bytes:
        """The next name, uncompressed, then one bitmap per window in use (RFC 4034 §4.1.2)."""
        windows: dict[int, bytearray] = {}
        for rtype in sorted(self.types):
            bitmap = windows.setdefault(rtype >> 8, bytearray())
            octet = (rtype & 0xFF) >> 3
            bitmap.extend(bytes(octet + 1 - len(bitmap)))
            bitmap[octet] |= 0x80 >> (rtype & 7)
        parts = [_encode_name(self.next_name)]
        for window, bitmap in windows.items():
            parts += [bytes([window, len(bitmap)]), bytes(bitmap)]
        return b"".join(parts)


#: The records this codec reads and writes.
Record = AddressRecord | NsecRecord


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """A DNS query or response with address and NSEC records only."""

    id: int = 0
    response: bool = False
    authoritative: bool = False
    questions: tuple[Question, ...] = ()
    #: The answer section: in a response what was asked for, in a query the answers the querier
    #: already knows (RFC 6762 §7.1).
    answers: tuple[Record, ...] = ()
    #: The additional section: records the responder expects to be useful (RFC 6762 §6.2).
    additionals: tuple[Record, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 0xFFFF:
            raise LocalProtocolError(f"message ID {self.id} out of range")
        if max(len(self.questions), len(self.answers), len(self.additionals)) > 0xFFFF:
            raise LocalProtocolError("at most 65535 questions and records per section")

    def encode(self) -> bytes:
        """The message in wire format, names uncompressed."""
        flags = (_QR if self.response else 0) | (_AA if self.authoritative else 0)
        counts = (len(self.questions), len(self.answers), 0, len(self.additionals))
        parts = [_HEADER.pack(self.id, flags, *counts)]
        for question in self.questions:
            qclass = CLASS_IN | (_TOP_BIT if question.unicast_response else 0)
            parts += [_encode_name(question.name), _QUESTION_TAIL.pack(question.type, qclass)]
        for record in self.answers + self.additionals:
            rdata = record.rdata()
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
        are ignored, as are the authority section and records other than A/AAAA/NSEC of class
        IN."""
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
        answers, offset = _decode_records(data, offset, ancount)
        _, offset = _decode_records(data, offset, nscount)
        additionals, offset = _decode_records(data, offset, arcount)
        return cls(
            message_id,
            bool(flags & _QR),
            bool(flags & _AA),
            tuple(questions),
            tuple(answers),
            tuple(additionals),
        )


def _decode_records(data: bytes, offset: int, count: int) -> tuple[list[Record], int]:
    """Parse ``count`` records from ``offset``; keep those this codec knows."""
    records: list[Record] = []
    for _ in range(count):
        name, offset = _decode_name(data, offset)
        rtype, rclass, ttl, rdlength = _unpack(_RECORD_TAIL, data, offset, "record")
        offset += _RECORD_TAIL.size
        end = offset + rdlength
        if end > len(data):
            raise DecodeError(f"DNS: record data of {rdlength} bytes runs past the end")
        if rclass & ~_TOP_BIT == CLASS_IN:
            cache_flush = bool(rclass & _TOP_BIT)
            if rtype in (RecordType.A, RecordType.AAAA):
                address = _decode_address(RecordType(rtype), data[offset:end])
                records.append(AddressRecord(name, address, ttl, cache_flush))
            elif rtype == RecordType.NSEC:
                next_name, types = _decode_nsec(data, offset, end)
                records.append(NsecRecord(name, next_name, types, ttl, cache_flush))
        offset = end
    return records, offset


def _decode_address(rtype: RecordType, rdata: bytes) -> str:
    if len(rdata) != (4 if rtype == RecordType.A else 16):
        raise DecodeError(f"DNS: {rtype.name} record of {len(rdata)} bytes")
    return ipaddress.ip_address(rdata).compressed


def _decode_nsec(data: bytes, offset: int, end: int) -> tuple[str, frozenset[int]]:
    """The next name and the types of an NSEC record's data at ``data[offset:end]`` (RFC 4034
    §4.1; the name may be compressed, as RFC 6762 §18.14 allows)."""
    next_name, offset = _decode_name(data[:end], offset)
    types: set[int] = set()
    previous = -1
    while offset < end:
        if offset + 2 > end:
            raise DecodeError("NSEC: type bitmap header truncated")
        window, length = data[offset], data[offset + 1]
        if window <= previous:
            raise DecodeError(f"NSEC: bitmap window {window} out of order")
        if not 1 <= length <= _WINDOW_OCTETS or offset + 2 + length > end:
            raise DecodeError(f"NSEC: bitmap of {length} octets in window {window}")
        for index, octet in enumerate(data[offset + 2 : offset + 2 + length]):
            types.update(
                (window << 8) | (index << 3) | bit for bit in range(8) if octet & (0x80 >> bit)
            )
        previous = window
        offset += 2 + length
    return next_name, frozenset(types)


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


def _check_ttl(ttl: int) -> None:
    if not 0 <= ttl <= 0xFFFF_FFFF:
        raise LocalProtocolError(f"TTL {ttl} out of range")


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
