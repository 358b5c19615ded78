"""Hypothesis strategies for messages a peer may send: validly signed (or not), with any attribute
value the codec decodes, from any address.

What a server or client must survive is not only garbage (``test_codec_properties`` covers the
parsers) but messages that decode and authenticate and still carry values no sane peer sends:
LIFETIME 0 or 2**32-1, channel numbers outside 0x4000-0x4FFF, families and transports nobody
registered, port 0, the unspecified, loopback, multicast and IPv4-embedding addresses, PRIORITY 0,
error codes of every class, DATA of any size. The pieces:

* :data:`addresses`: IPv4 and IPv6, special ones often, any port (0 included); :data:`sources`
  adds link-local ones with a zone, as a socket reports them.
* :data:`WIRE_VALUES`: for every registered attribute type (STUN's and TURN's), its values at the
  edges of their wire ranges. Where the typed class refuses to *send* a value that it accepts when
  received (PRIORITY 0, an ERROR-CODE of class 7, reserved bits set), the value is built as an
  :class:`stun.UnknownAttribute` carrying those bytes: it decodes as the typed attribute.
* :func:`drafts`: a message to be: method, class, transaction ID, attributes. A draft is signed
  only when sent (:meth:`Draft.encode`), because a long-term nonce depends on the source address
  and the time.
* Signers: :class:`LongTermSigner` (USERNAME, REALM, a NONCE the server accepts — nonces are
  stateless, so a signer that knows the server's nonce secret can make them — and
  MESSAGE-INTEGRITY(-SHA256)), :class:`ShortTermSigner`, or ``None`` for unsigned.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st

import stun
import turn
from stun import (
    Address,
    AlgorithmEntry,
    Attribute,
    Integrity,
    Message,
    MessageClass,
    Method,
    NonceIssuer,
    PasswordAlgorithmId,
    SecurityFeatures,
    UnknownAttribute,
    long_term_key,
    make_address,
    short_term_key,
)
from stun.attributes import registered_attribute

# --------------------------------------------------------------------------- addresses

#: Hosts a peer has no business naming, and a few it may: each is drawn often.
SPECIAL_HOSTS = (
    "0.0.0.0", "255.255.255.255", "127.0.0.1", "127.1.2.3", "10.0.0.1", "169.254.169.254",
    "224.0.0.251", "192.0.0.170", "198.18.0.1", "100.64.0.1", "192.0.2.1", "198.51.100.7",
    "203.0.113.9",
    "::", "::1", "ff02::fb", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::7f00:1",
    "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "2002:7f00:1::1", "2001::1", "2001:db8::9",
)  # fmt: skip
hosts = st.one_of(
    st.sampled_from(SPECIAL_HOSTS),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: ip.compressed),
)
ports = st.one_of(st.sampled_from((0, 1, 3478, 65535)), st.integers(0, 0xFFFF))
addresses = st.builds(make_address, hosts, ports)
#: Source addresses as a driver passes them: normalised, or link-local with its zone (the form
#: recvfrom gives for fe80::/10, which no attribute can carry).
sources = st.one_of(addresses, st.builds(Address, st.just("fe80::1%lo"), ports))

# --------------------------------------------------------------------------- wire values


def edged(low: int, high: int, *edges: int) -> st.SearchStrategy[int]:
    """Integers in ``[low, high]``, the bounds and ``edges`` often."""
    return st.one_of(st.sampled_from((low, high, *edges)), st.integers(low, high))


u8 = edged(0, 0xFF, 1, 2, 6, 17)
u16 = edged(0, 0xFFFF, 1)
u32 = edged(0, 0xFFFFFFFF, 1, 599, 600, 3600, 3601, 2**31)
u64 = edged(0, 2**64 - 1)
channel_numbers = edged(0, 0xFFFF, 0x3FFF, 0x4000, 0x4001, 0x4FFF, 0x5000, 0x7FFF, 0x8000)
#: At most 100 code points of at most 4 UTF-8 bytes: within the 763-byte limit of text values.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=100)
payloads = st.one_of(st.binary(max_size=64), st.integers(0, 1500).map(bytes))
#: A reason phrase for ERROR-CODE and ADDRESS-ERROR-CODE, as received: any UTF-8 text.
reasons = texts.map(lambda text: text.encode())


def raw(code: int, value: st.SearchStrategy[bytes]) -> st.SearchStrategy[Attribute]:
    """Attributes of type ``code`` carrying ``value`` as it is (see the module docstring)."""
    return value.map(lambda data: UnknownAttribute(code, data))


def packed(fmt: str, *fields: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    return st.tuples(*fields).map(lambda values: struct.pack(fmt, *values))


#: ERROR-CODE values: mostly ones that decode (class 3-6, number 0-99), some that do not.
error_values = st.tuples(
    st.one_of(
        packed("!HBB", u16, st.integers(3, 6), st.integers(0, 99)), packed("!HBB", u16, u8, u8)
    ),
    reasons,
).map(lambda parts: parts[0] + parts[1])
#: A one-byte value and three reserved bytes (families, REQUESTED-TRANSPORT), reserved bits set
#: now and then.
family_values = st.tuples(u8, st.one_of(st.just(bytes(3)), st.binary(min_size=3, max_size=3))).map(
    lambda parts: bytes([parts[0]]) + parts[1]
)

_T = stun.AttrType
_TT = turn.TurnAttrType

#: Every registered attribute type's values as a peer may send them (a test checks the list).
WIRE_VALUES: dict[int, st.SearchStrategy[Attribute]] = {
    _T.MAPPED_ADDRESS: st.builds(stun.MappedAddress, addresses),
    _T.XOR_MAPPED_ADDRESS: st.builds(stun.XorMappedAddress, addresses),
    _T.ALTERNATE_SERVER: st.builds(stun.AlternateServer, addresses),
    _T.RESPONSE_ORIGIN: st.builds(stun.ResponseOrigin, addresses),
    _T.OTHER_ADDRESS: st.builds(stun.OtherAddress, addresses),
    _T.USERNAME: st.builds(stun.Username, texts),
    _T.REALM: st.builds(stun.Realm, texts),
    _T.NONCE: st.builds(stun.Nonce, st.one_of(texts, st.just("obMatJos2gAAA"))),
    _T.SOFTWARE: st.builds(stun.Software, texts),
    _T.ALTERNATE_DOMAIN: st.builds(stun.AlternateDomain, texts),
    _T.USERHASH: st.builds(stun.Userhash, st.binary(min_size=32, max_size=32)),
    _T.PADDING: st.builds(stun.Padding, st.binary(max_size=64)),
    _T.PRIORITY: raw(_T.PRIORITY, packed("!I", u32)),
    _T.USE_CANDIDATE: st.just(stun.UseCandidate()),
    _T.ICE_CONTROLLED: st.builds(stun.IceControlled, u64),
    _T.ICE_CONTROLLING: st.builds(stun.IceControlling, u64),
    _T.CHANGE_REQUEST: raw(_T.CHANGE_REQUEST, packed("!I", u32)),
    _T.RESPONSE_PORT: raw(_T.RESPONSE_PORT, packed("!HH", u16, u16)),
    _T.ERROR_CODE: raw(_T.ERROR_CODE, error_values),
    _T.UNKNOWN_ATTRIBUTES: st.lists(u16, max_size=8).map(
        lambda types: stun.UnknownAttributes(tuple(types))
    ),
    _T.PASSWORD_ALGORITHM: st.builds(stun.PasswordAlgorithm, u16, st.binary(max_size=12)),
    _T.PASSWORD_ALGORITHMS: st.lists(
        st.builds(AlgorithmEntry, u16, st.binary(max_size=12)), max_size=4
    ).map(lambda entries: stun.PasswordAlgorithms(tuple(entries))),
    _TT.CHANNEL_NUMBER: raw(_TT.CHANNEL_NUMBER, packed("!HH", channel_numbers, u16)),
    _TT.LIFETIME: raw(_TT.LIFETIME, packed("!I", u32)),
    _TT.XOR_PEER_ADDRESS: st.builds(turn.XorPeerAddress, addresses),
    _TT.DATA: st.builds(turn.Data, payloads),
    _TT.XOR_RELAYED_ADDRESS: st.builds(turn.XorRelayedAddress, addresses),
    _TT.REQUESTED_ADDRESS_FAMILY: raw(_TT.REQUESTED_ADDRESS_FAMILY, family_values),
    _TT.EVEN_PORT: raw(_TT.EVEN_PORT, st.binary(min_size=1, max_size=1)),
    _TT.REQUESTED_TRANSPORT: raw(_TT.REQUESTED_TRANSPORT, family_values),
    _TT.DONT_FRAGMENT: st.just(turn.DontFragment()),
    _TT.RESERVATION_TOKEN: st.builds(turn.ReservationToken, st.binary(min_size=8, max_size=8)),
    _TT.CONNECTION_ID: raw(_TT.CONNECTION_ID, packed("!I", u32)),
    _TT.ADDITIONAL_ADDRESS_FAMILY: raw(_TT.ADDITIONAL_ADDRESS_FAMILY, family_values),
    _TT.ADDRESS_ERROR_CODE: raw(
        _TT.ADDRESS_ERROR_CODE,
        st.tuples(u8, error_values).map(lambda parts: bytes([parts[0]]) + parts[1][1:]),
    ),
    _TT.ICMP: st.builds(turn.Icmp, u8, u8, u32),
}
#: Types that :meth:`stun.Message.encode` adds itself: never in an attribute list.
SECURITY_TYPES = frozenset((_T.MESSAGE_INTEGRITY, _T.MESSAGE_INTEGRITY_SHA256, _T.FINGERPRINT))

unknown_attributes = st.builds(
    UnknownAttribute,
    edged(0, 0xFFFF, 0x7FFF, 0x8000).filter(lambda code: registered_attribute(code) is None),
    st.binary(max_size=16),
)
#: Any registered attribute with a value that decodes, now and then one nobody registered.
wire_attributes = st.one_of(*WIRE_VALUES.values(), unknown_attributes)


def attributes_of(*codes: int) -> st.SearchStrategy[Attribute]:
    """Values of the given attribute types only."""
    return st.one_of(*(WIRE_VALUES[code] for code in codes))


# --------------------------------------------------------------------------- signing


@dataclass(frozen=True)
class LongTermSigner:
    """Signs as a user of a long-term credential server (RFC 8489 §9.2.4): USERNAME, REALM and a
    NONCE the server accepts for the source address, then MESSAGE-INTEGRITY under the MD5 key —
    or, with ``algorithm``, PASSWORD-ALGORITHMS (the server's offer, echoed) and
    PASSWORD-ALGORITHM, and MESSAGE-INTEGRITY-SHA256 under that algorithm's key.

    The server's nonces are stateless (:mod:`stun.nonces`): an issuer with its secret and
    features makes nonces it takes for its own.
    """

    username: str
    password: str
    realm: str
    nonce_secret: bytes
    features: SecurityFeatures = SecurityFeatures.NONE
    offered: tuple[PasswordAlgorithmId, ...] = ()
    algorithm: PasswordAlgorithmId | None = None
    nonces: NonceIssuer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        issuer = NonceIssuer(secret=self.nonce_secret, features=self.features)
        object.__setattr__(self, "nonces", issuer)

    @property
    def key(self) -> bytes:
        algorithm = self.algorithm or PasswordAlgorithmId.MD5
        return long_term_key(self.username, self.realm, self.password, algorithm)

    @property
    def integrity(self) -> Integrity:
        return Integrity.SHA1 if self.algorithm is None else Integrity.SHA256

    def credentials(self, source: Address, now: float) -> list[Attribute]:
        attributes: list[Attribute] = [
            stun.Username(self.username),
            stun.Realm(self.realm),
            stun.Nonce(self.nonces.issue(source, now)),
        ]
        if self.algorithm is not None:
            entries = tuple(AlgorithmEntry(a) for a in self.offered)
            attributes += [stun.PasswordAlgorithms(entries), stun.PasswordAlgorithm(self.algorithm)]
        return attributes


@dataclass(frozen=True)
class ShortTermSigner:
    """Signs with a short-term credential (RFC 8489 §9.1): USERNAME, MESSAGE-INTEGRITY."""

    username: str
    password: str

    @property
    def key(self) -> bytes:
        return short_term_key(self.password)

    integrity = Integrity.SHA1

    def credentials(self, source: Address, now: float) -> list[Attribute]:
        return [stun.Username(self.username)]


Signer = LongTermSigner | ShortTermSigner


@dataclass(frozen=True)
class Draft:
    """A message to be sent; :meth:`encode` signs it for a source address and a time."""

    method: int
    message_class: MessageClass
    transaction_id: bytes
    attributes: tuple[Attribute, ...]
    fingerprint: bool = True

    def message(self, extra: Sequence[Attribute] = ()) -> Message:
        """The message, with ``extra`` attributes first (credentials go first: where two
        attributes of a type are present, a receiver reads the first)."""
        return Message(
            self.method, self.message_class, self.transaction_id, [*extra, *self.attributes]
        )

    def encode(self, signer: Signer | None, source: Address, now: float) -> bytes:
        """The bytes, signed by ``signer`` as ``source`` at ``now`` (unsigned if ``None``)."""
        if signer is None:
            return self.message().encode(fingerprint=self.fingerprint)
        message = self.message(signer.credentials(source, now))
        return message.encode(
            key=signer.key, integrity=signer.integrity, fingerprint=self.fingerprint
        )

    def encode_with(self, key: bytes | None, integrity: Integrity = Integrity.SHA1) -> bytes:
        """The bytes, protected with ``key`` (as a response to a request signed with it)."""
        return self.message().encode(key=key, integrity=integrity, fingerprint=self.fingerprint)


transaction_ids = st.binary(min_size=12, max_size=12)
requests_only = st.just(MessageClass.REQUEST)


def drafts(
    methods: st.SearchStrategy[int],
    *,
    classes: st.SearchStrategy[MessageClass] = requests_only,
    attributes: st.SearchStrategy[Attribute] = wire_attributes,
    max_attributes: int = 6,
) -> st.SearchStrategy[Draft]:
    """Drafts of the given methods and classes with up to ``max_attributes`` attributes."""
    return st.builds(
        Draft,
        methods,
        classes,
        transaction_ids,
        st.lists(attributes, max_size=max_attributes).map(tuple),
        st.booleans(),
    )


#: Every method code, registered ones often.
any_method = st.one_of(st.sampled_from(Method), st.integers(0, 0xFFF))
