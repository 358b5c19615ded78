"""ICE candidates (RFC 8445 §5.1) and the ICE attributes of a session description (RFC 8839 §5).

Here live the :class:`Candidate` value and its ``candidate-attribute`` text form; the numbers an
agent computes about candidates: priority (§5.1.2) with a unique local preference per base
(RFC 8421), foundation (§5.1.1.3), redundancy elimination (§5.1.3), pair priority (§6.1.2.3); the
TCP candidates' preferences and pairing rules (RFC 6544 §4.2, §6.2); and the other ICE SDP
attributes of a data stream (:class:`IceDescription`) with credential generation (§5.3).

Text form. :meth:`Candidate.to_sdp` returns the attribute *value*, without ``a=`` or
``candidate:``, exactly as aioice's ``Candidate.to_sdp`` does, so code written for aioice/aiortc
keeps working (a browser's ``RTCIceCandidate.candidate`` is ``"candidate:" + c.to_sdp()``). The
transport is written in lower case, as Chrome and aioice write it; Firefox writes ``UDP``, and both
parse. :meth:`Candidate.from_sdp` takes a line with or without ``a=`` and ``candidate:``.
"""

from __future__ import annotations

import enum
import hashlib
import re
import string
import sys
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from itertools import zip_longest
from types import MappingProxyType

from stun.address import Address, normalize_host
from stun.errors import LocalProtocolError as StunLocalProtocolError
from stun.randomness import RandomSource

from .errors import DecodeError, LocalProtocolError, UnsupportedCandidateError, enum_member

#: The transports an agent can use: UDP (RFC 8445) and TCP (RFC 6544), in their SDP spelling.
TRANSPORTS = ("udp", "tcp")
#: A candidate priority is a positive 31-bit integer (RFC 8445 §5.1.2.1).
MAX_PRIORITY = 2**31 - 1
#: ``ice-char = ALPHA / DIGIT / "+" / "/"`` (RFC 8839 §5.1): 64 characters, 6 bits each.
ICE_CHARS = string.ascii_letters + string.digits + "+/"
#: Generated credentials: 48 bits of randomness in the ufrag (§5.3 asks for at least 24) and 144
#: in the password (at least 128); the ufrag stays under RFC 8839 §5.4's 32-character send limit.
UFRAG_LENGTH = 8
PWD_LENGTH = 24

_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")  # RFC 3261 token
_VCHARS = re.compile(r"[\x21-\x7e]+")
_MDNS_NAME = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+local", re.I | re.A)
_HOSTNAME = re.compile(r"[A-Za-z0-9.-]+")
_PREFIX = "candidate:"
# Names that have a field of their own, so an extension may not reuse them.
_RESERVED = frozenset({"raddr", "rport", "tcptype", "generation"})


class CandidateType(enum.StrEnum):
    """The kind of a candidate (RFC 8445 §5.1.1), by its SDP name (RFC 8839 §5.1)."""

    HOST = "host"
    SERVER_REFLEXIVE = "srflx"
    PEER_REFLEXIVE = "prflx"
    RELAYED = "relay"


class TcpType(enum.StrEnum):
    """How a TCP candidate connects (RFC 6544 §4.5)."""

    ACTIVE = "active"
    PASSIVE = "passive"
    SIMULTANEOUS_OPEN = "so"


#: Recommended type preferences (RFC 8445 §5.1.2.2).
TYPE_PREFERENCE: Mapping[CandidateType, int] = MappingProxyType(
    {
        CandidateType.HOST: 126,
        CandidateType.PEER_REFLEXIVE: 110,
        CandidateType.SERVER_REFLEXIVE: 100,
        CandidateType.RELAYED: 0,
    }
)


#: Type preferences of TCP candidates (RFC 6544 §4.2). The RFC lets an agent prefer UDP to TCP,
#: to use the lower-latency UDP path whenever one works; these are the values browsers use
#: (libwebrtc: 90 for host and 80 for peer-reflexive TCP candidates), which put every TCP pair
#: below the UDP pairs of the same kinds and below UDP server-reflexive pairs, and above relayed
#: ones: direct UDP first, then direct TCP, then a relay.
TCP_TYPE_PREFERENCE: Mapping[CandidateType, int] = MappingProxyType(
    {
        CandidateType.HOST: 90,
        CandidateType.PEER_REFLEXIVE: 80,
        CandidateType.SERVER_REFLEXIVE: 70,
        CandidateType.RELAYED: 0,
    }
)
#: The port an active TCP candidate is signalled with: it has none of its own (RFC 6544 §4.5).
ACTIVE_TCP_PORT = 9
#: RFC 6544 §4.2's direction-pref: host and relayed candidates favour active, then passive, then
#: simultaneous-open; server- and peer-reflexive ones simultaneous-open, then active, then passive
#: (through a NAT, S-O is the direction that can work).
_DIRECTION_PREFERENCE: Mapping[bool, Mapping[TcpType, int]] = MappingProxyType(
    {
        False: MappingProxyType(
            {TcpType.ACTIVE: 6, TcpType.PASSIVE: 4, TcpType.SIMULTANEOUS_OPEN: 2}
        ),
        True: MappingProxyType(
            {TcpType.SIMULTANEOUS_OPEN: 6, TcpType.ACTIVE: 4, TcpType.PASSIVE: 2}
        ),
    }
)
#: Which local TCP types pair with which remote ones (RFC 6544 §6.2): active with passive, passive
#: with active, S-O with S-O; never two passive candidates (nobody would connect).
_TCP_PARTNER = MappingProxyType(
    {
        TcpType.ACTIVE: TcpType.PASSIVE,
        TcpType.PASSIVE: TcpType.ACTIVE,
        TcpType.SIMULTANEOUS_OPEN: TcpType.SIMULTANEOUS_OPEN,
    }
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ICE candidate (RFC 8445 §5.1), local or remote.

    The first seven fields are positional in aioice's order. ``host`` is an IP literal, normalised
    (compressed IPv6), or an mDNS name ending in ``.local`` (RFC 8828), kept as given;
    ``transport`` is stored in lower case. ``related_address`` is the SDP ``raddr``/``rport``,
    ``tcp_type`` the RFC 6544 ``tcptype`` (present exactly for TCP candidates), ``generation``
    Chrome's ``generation``, and ``extensions`` every other ``name value`` pair, in order (say
    ``network-id 1``, ``network-cost 10``, ``ufrag abc``): kept, written back, otherwise ignored.

    ``base`` is for local candidates only: the address the agent sends from when it uses this
    candidate (§5.1.1; a server-reflexive candidate's base is the host candidate it was learnt
    through, a host or relayed candidate is its own base). It is not part of the SDP form and does
    not take part in equality, so a candidate parsed back from its text equals the original.

    ``type`` and ``tcp_type`` also take their enum's strings (``type="host"``), stored as the
    member. Building one with a bad field raises :class:`~ice.LocalProtocolError`.
    """

    foundation: str
    component: int
    transport: str
    priority: int
    host: str
    port: int
    type: CandidateType
    _: KW_ONLY
    related_address: Address | None = None
    tcp_type: TcpType | None = None
    generation: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()
    base: Address | None = field(default=None, compare=False)
    #: The candidate's transport address (``host``, ``port``): made once, as the agent asks for
    #: it on every pairing, check and lookup.
    address: Address = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_types(self)
        object.__setattr__(self, "type", enum_member(CandidateType, self.type, "type"))
        if self.tcp_type is not None:
            tcp_type = enum_member(TcpType, self.tcp_type, "tcptype")
            object.__setattr__(self, "tcp_type", tcp_type)
        if not (len(self.foundation) <= 32 and _ICE_CHARS.fullmatch(self.foundation)):
            raise LocalProtocolError(f"foundation {_show(self.foundation)} is not 1-32 ice-chars")
        _check_range("component-id", self.component, 1, 256)
        lowered = self.transport.lower()
        if lowered not in TRANSPORTS:
            raise LocalProtocolError(f"transport {_show(self.transport)} is not UDP or TCP")
        # The shared constant, not the new string lower() made: 52 bytes per candidate.
        transport = TRANSPORTS[TRANSPORTS.index(lowered)]
        _check_range("priority", self.priority, 1, MAX_PRIORITY)
        _check_range("port", self.port, 0, 0xFFFF)
        if (self.tcp_type is not None) != (transport == "tcp"):
            raise LocalProtocolError("a tcptype is required for TCP candidates and only for them")
        if self.generation is not None:
            _check_range("generation", self.generation, 0, 2**32 - 1)
        for name, value in self.extensions:
            if not _TOKEN.fullmatch(name) or name.lower() in _RESERVED:
                raise LocalProtocolError(f"bad extension name {_show(name)}")
            if not _VCHARS.fullmatch(value):
                raise LocalProtocolError(f"extension {name}: bad value {_show(value)}")
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "host", _connection_address(self.host))
        base = self.base
        if type(base) is Address and base.port == self.port and base.host == self.host:
            address = base  # a host or relayed candidate is its own base: one object, not two
        else:
            address = Address(self.host, self.port)
        object.__setattr__(self, "address", address)
        if self.related_address is not None:
            related_host, related_port = self.related_address
            _check_range("rport", related_port, 0, 0xFFFF)
            object.__setattr__(
                self, "related_address", Address(_connection_address(related_host), related_port)
            )

    @property
    def is_mdns(self) -> bool:
        """Whether ``host`` is an mDNS name (RFC 8828) that must be resolved before use."""
        return self.host[-6:].lower() == ".local"

    @classmethod
    def from_sdp(cls, line: str) -> Candidate:
        """Parse a ``candidate-attribute`` (RFC 8839 §5.1), with or without ``a=candidate:``.

        Keywords (``typ``, ``raddr``…), the type and the transport are case-insensitive. Raises
        :class:`~ice.UnsupportedCandidateError` for a well-formed candidate this agent cannot use
        (another transport or type, an FQDN) — RFC 8839 says to ignore those — and
        :class:`~ice.DecodeError` for anything malformed; never any other exception.
        """
        text = line.strip().removeprefix("a=")
        if text[: len(_PREFIX)].lower() == _PREFIX:
            text = text[len(_PREFIX) :]
        fields = text.split()
        if len(fields) < 8:
            raise DecodeError(f"candidate: {len(fields)} fields, at least 8 expected")
        foundation, component, transport, priority, host, port, typ, kind, *rest = fields
        component_id = _number("component-id", component, 3)
        priority_value = _number("priority", priority, 10)
        port_number = _number("port", port, 5)
        if typ.lower() != "typ":
            raise DecodeError(f"candidate: 'typ' expected before the type, got {_show(typ)}")
        if transport.lower() not in TRANSPORTS:
            raise _unsupported_or_malformed("transport", transport)
        try:
            candidate_type = CandidateType(kind.lower())
        except ValueError:
            raise _unsupported_or_malformed("candidate type", kind) from None
        if not _is_mdns_name(host) and _HOSTNAME.fullmatch(host) and _has_letter(host):
            raise UnsupportedCandidateError(
                f"candidate: FQDN candidates are not supported ({_show(host)})"
            )
        if len(rest) % 2:
            raise DecodeError(f"candidate: extension {_show(rest[-1])} has no value")
        known: dict[str, str] = {}
        extensions: list[tuple[str, str]] = []
        for name, value in zip(rest[::2], rest[1::2], strict=True):
            key = name.lower()
            if key not in _RESERVED:
                extensions.append((name, value))
            elif key in known:
                raise DecodeError(f"candidate: {key} given twice")
            else:
                known[key] = value
        if ("raddr" in known) != ("rport" in known):
            raise DecodeError("candidate: raddr and rport must come together")
        related_address = (
            Address(known["raddr"], _number("rport", known["rport"], 5))
            if "raddr" in known
            else None
        )
        tcp_type = known.get("tcptype")
        generation = known.get("generation")
        try:
            return cls(
                foundation,
                component_id,
                transport,
                priority_value,
                host,
                port_number,
                candidate_type,
                related_address=related_address,
                tcp_type=None if tcp_type is None else _tcp_type(tcp_type),
                generation=None if generation is None else _number("generation", generation, 10),
                extensions=tuple(extensions),
            )
        except LocalProtocolError as exc:
            raise DecodeError(f"candidate: {exc}") from None

    def to_sdp(self) -> str:
        """The ``candidate-attribute`` value (RFC 8839 §5.1), without ``a=candidate:``."""
        parts = [
            self.foundation,
            str(self.component),
            self.transport,
            str(self.priority),
            self.host,
            str(self.port),
            "typ",
            self.type.value,
        ]
        if self.related_address is not None:
            parts += ["raddr", self.related_address.host, "rport", str(self.related_address.port)]
        if self.tcp_type is not None:
            parts += ["tcptype", self.tcp_type.value]
        if self.generation is not None:
            parts += ["generation", str(self.generation)]
        for name, value in self.extensions:
            parts += [name, value]
        return " ".join(parts)


def candidate_priority(type_preference: int, local_preference: int, component: int) -> int:
    """A candidate's priority by the recommended formula (RFC 8445 §5.1.2.1)."""
    _check_range("type preference", type_preference, 0, 126)
    _check_range("local preference", local_preference, 0, 0xFFFF)
    _check_range("component-id", component, 1, 256)
    return (type_preference << 24) + (local_preference << 8) + (256 - component)


def tcp_local_preference(
    candidate_type: CandidateType, tcp_type: TcpType, other_preference: int
) -> int:
    """The local preference of a TCP candidate (RFC 6544 §4.2): ``2^13 * direction-pref +
    other-pref``, where ``other_preference`` (0-8191) ranks the candidate's IP address."""
    _check_range("other-pref", other_preference, 0, 0x1FFF)
    reflexive = candidate_type in (CandidateType.SERVER_REFLEXIVE, CandidateType.PEER_REFLEXIVE)
    return (_DIRECTION_PREFERENCE[reflexive][tcp_type] << 13) + other_preference


def other_preference(local_preference: int) -> int:
    """The other-pref of RFC 6544 §4.2 (0-8191) that keeps a UDP local preference's rank: 65535
    becomes 8191, each step below it one step below that."""
    return max(0, 0x1FFF - (0xFFFF - local_preference))


def tcp_partner(tcp_type: TcpType) -> TcpType:
    """The remote TCP type a local candidate of ``tcp_type`` pairs with (RFC 6544 §6.2); also the
    TCP type of a peer-reflexive remote candidate that reaches a local candidate of ``tcp_type``
    (RFC 6544 §7.2.2)."""
    return _TCP_PARTNER[tcp_type]


def pairs_with(local: Candidate, remote: Candidate) -> bool:
    """Whether a local and a remote candidate form a pair: same transport and address family,
    and for TCP, directions that can meet (RFC 6544 §6.2)."""
    if local.transport != remote.transport or (":" in local.host) != (":" in remote.host):
        return False
    return local.tcp_type is None or remote.tcp_type is _TCP_PARTNER[local.tcp_type]


def local_preferences(bases: Iterable[str]) -> dict[str, int]:
    """A distinct local preference for each base IP address, keyed by its normalised text.

    RFC 8445 §5.1.2.1 requires candidates of one type and component to have distinct local
    preferences, so an agent with several interfaces must not give them all 65535. Values count
    down from 65535 in RFC 8421 §4 order: IPv6 first with a head start of (N4 + N6) // N4
    addresses, then the families alternate, so a broken IPv6 path cannot hold back every IPv4
    check. Within a family the caller's order is kept (put unreliable interfaces last, RFC 8421
    §3); a repeated address keeps its first place. The same list always gives the same values.
    """
    ipv4: list[str] = []
    ipv6: list[str] = []
    seen: set[str] = set()
    for base in bases:
        host = _ip_literal(base)
        if host not in seen:
            seen.add(host)
            (ipv6 if ":" in host else ipv4).append(host)
    if len(seen) > 0x10000:
        raise LocalProtocolError(f"{len(seen)} base addresses: at most 65536 local preferences")
    head = len(ipv6) if not ipv4 else (len(ipv4) + len(ipv6)) // len(ipv4)
    order = ipv6[:head]
    for pair in zip_longest(ipv4, ipv6[head:]):
        order += [host for host in pair if host is not None]
    return {host: 0xFFFF - rank for rank, host in enumerate(order)}


def compute_foundation(
    candidate_type: CandidateType,
    base_host: str,
    transport: str,
    server_host: str | None = None,
    *,
    server_transport: str | None = None,
    salt: bytes = b"",
) -> str:
    """The foundation of a local candidate (RFC 8445 §5.1.1.3): 16 hex digits.

    Two candidates get the same foundation exactly when they have the same type, base IP address
    (ports do not count), transport and — for reflexive and relayed candidates — STUN or TURN
    server IP address (``server_host``), as the RFC requires; anything else differs (a 64-bit
    digest, so a collision is practically impossible). A relayed candidate obtained from its
    TURN server over TCP or TLS says so in ``server_transport`` (``"tcp"``, ``"tls"``): the RFC's
    "obtained using the same transport protocol", so that its foundation differs from the UDP
    relay's of the same server. ``salt`` (up to 64 bytes, e.g. per-agent random bytes) makes the
    foundation depend on a secret, so that it cannot be used to guess a base address hidden
    behind an mDNS name (RFC 8828).
    """
    if len(salt) > 64:
        raise LocalProtocolError("foundation salt: at most 64 bytes")
    if transport.lower() not in TRANSPORTS:
        raise LocalProtocolError(f"transport {_show(transport)} is not UDP or TCP")
    server = "" if server_host is None else _ip_literal(server_host)
    if server_transport is not None:
        server += f" via {server_transport.lower()}"
    kind = enum_member(CandidateType, candidate_type, "candidate type")
    key = f"{kind} {_ip_literal(base_host)} {transport.lower()} {server}"
    # Interned: every agent of a host has the same host foundations, held once, not per agent.
    return sys.intern(hashlib.blake2b(key.encode(), digest_size=8, key=salt).hexdigest())


def eliminate_redundant(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Drop the redundant local candidates (RFC 8445 §5.1.3).

    A candidate is redundant when another has the same transport address and the same base and a
    higher priority (on a tie the earlier one stays). Every candidate must carry its ``base``.
    The survivors keep their order.
    """
    listed = list(candidates)
    best: dict[tuple[str, Address, Address], Candidate] = {}
    for candidate in listed:
        if candidate.base is None:
            raise LocalProtocolError(f"candidate {candidate.to_sdp()!r} has no base")
        key = (candidate.transport, candidate.address, candidate.base)
        kept = best.get(key)
        if kept is None or candidate.priority > kept.priority:
            best[key] = candidate
    survivors = {id(candidate) for candidate in best.values()}
    return [candidate for candidate in listed if id(candidate) in survivors]


def pair_priority(controlling_priority: int, controlled_priority: int) -> int:
    """A candidate pair's priority from its two candidates' priorities (RFC 8445 §6.1.2.3)."""
    low, high = sorted((controlling_priority, controlled_priority))
    return (low << 32) + 2 * high + (controlling_priority > controlled_priority)


# --------------------------------------------------------------------------- SDP session attributes


def validate_ufrag(ufrag: str) -> None:
    """Raise :class:`~ice.LocalProtocolError` unless ``ufrag`` is 4-256 ice-chars (RFC 8839
    §5.4)."""
    if not (4 <= len(ufrag) <= 256 and _ICE_CHARS.fullmatch(ufrag)):
        raise LocalProtocolError(f"ice-ufrag {_show(ufrag)} is not 4-256 ice-chars")


def validate_pwd(pwd: str) -> None:
    """Raise :class:`~ice.LocalProtocolError` unless ``pwd`` is 22-256 ice-chars (RFC 8839
    §5.4)."""
    if not (22 <= len(pwd) <= 256 and _ICE_CHARS.fullmatch(pwd)):
        raise LocalProtocolError(f"ice-pwd of {len(pwd)} characters is not 22-256 ice-chars")


def generate_credentials(rng: RandomSource) -> tuple[str, str]:
    """A fresh ``(ufrag, pwd)`` for an ICE session or restart (RFC 8445 §5.3), from ``rng``."""
    return _random_ice_chars(rng, UFRAG_LENGTH), _random_ice_chars(rng, PWD_LENGTH)


@dataclass(frozen=True, slots=True, kw_only=True)
class IceDescription:
    """The ICE attributes of one data stream in an SDP offer or answer (RFC 8839 §5).

    ``options`` are the ``a=ice-options`` tags (``trickle``, ``ice2``…), ``lite`` is
    ``a=ice-lite``, ``pacing_ms`` the ``a=ice-pacing`` Ta proposal (§5.5; absent means 50 ms),
    ``end_of_candidates`` is RFC 8840's ``a=end-of-candidates``.
    """

    ufrag: str
    pwd: str
    options: tuple[str, ...] = ()
    lite: bool = False
    pacing_ms: int | None = None
    candidates: tuple[Candidate, ...] = ()
    end_of_candidates: bool = False

    def __post_init__(self) -> None:
        validate_ufrag(self.ufrag)
        validate_pwd(self.pwd)
        for option in self.options:
            if not _ICE_CHARS.fullmatch(option):
                raise LocalProtocolError(f"ice-option {_show(option)} is not 1*ice-char")
        if self.pacing_ms is not None:
            _check_range("ice-pacing", self.pacing_ms, 1, 9_999_999_999)

    @classmethod
    def from_sdp(cls, text: str) -> IceDescription:
        """Read the ICE attributes from SDP text: one media section, or session plus one media.

        Lines that are not ICE attributes are skipped; so are candidates this agent cannot use
        (RFC 8839 §5.1). A repeated ``ice-ufrag``, ``ice-pwd`` or ``ice-pacing`` must repeat the
        same value. Raises only :class:`~ice.DecodeError`.
        """
        single: dict[str, str] = {}
        options: list[str] = []
        candidates: list[Candidate] = []
        lite = end_of_candidates = False
        for raw in text.splitlines():
            line = raw.strip()
            if not line.startswith("a="):
                continue
            name, _, value = line[2:].partition(":")
            if name in ("ice-ufrag", "ice-pwd", "ice-pacing"):
                if single.setdefault(name, value) != value:
                    raise DecodeError(f"a={name}: two different values")
            elif name == "ice-options":
                options += [tag for tag in value.split() if tag not in options]
            elif name == "candidate":
                try:
                    candidates.append(Candidate.from_sdp(value))
                except UnsupportedCandidateError:
                    continue
            elif name == "ice-lite":
                lite = True
            elif name == "end-of-candidates":
                end_of_candidates = True
        for name in ("ice-ufrag", "ice-pwd"):
            if name not in single:
                raise DecodeError(f"no a={name} line")
        pacing = single.get("ice-pacing")
        try:
            return cls(
                ufrag=single["ice-ufrag"],
                pwd=single["ice-pwd"],
                options=tuple(options),
                lite=lite,
                pacing_ms=None if pacing is None else _number("ice-pacing", pacing, 10),
                candidates=tuple(candidates),
                end_of_candidates=end_of_candidates,
            )
        except LocalProtocolError as exc:
            raise DecodeError(str(exc)) from None

    def to_sdp(self) -> str:
        """The attribute lines, ``a=`` prefixed, each ended by CRLF (RFC 8866 §5)."""
        lines = ["a=ice-lite"] if self.lite else []
        lines += [f"a=ice-ufrag:{self.ufrag}", f"a=ice-pwd:{self.pwd}"]
        if self.options:
            lines.append("a=ice-options:" + " ".join(self.options))
        if self.pacing_ms is not None:
            lines.append(f"a=ice-pacing:{self.pacing_ms}")
        lines += [f"a=candidate:{candidate.to_sdp()}" for candidate in self.candidates]
        if self.end_of_candidates:
            lines.append("a=end-of-candidates")
        return "".join(line + "\r\n" for line in lines)


# --------------------------------------------------------------------------- helpers


def _show(text: str) -> str:
    """``repr`` of a piece of peer input, cut short so that error messages stay readable."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def _check_types(candidate: Candidate) -> None:
    """A field of the wrong Python type is local misuse, said as such (not a TypeError later)."""
    for name in ("foundation", "transport", "host"):
        if not isinstance(getattr(candidate, name), str):
            raise LocalProtocolError(f"{name} must be a str, not {getattr(candidate, name)!r}")
    for name in ("component", "priority", "port", "generation"):
        value = getattr(candidate, name)
        if (value is not None or name != "generation") and (
            not isinstance(value, int) or isinstance(value, bool)
        ):
            raise LocalProtocolError(f"{name} must be an int, not {value!r}")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise LocalProtocolError(f"{name} {value} out of range {low}-{high}")


def _number(name: str, text: str, max_digits: int) -> int:
    """A field of 1 to ``max_digits`` ASCII digits (``int()`` would also take "+1", "1_0" and
    non-ASCII digits)."""
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        raise DecodeError(f"{name} {_show(text)} is not a number of 1-{max_digits} digits")
    return int(text)


def _tcp_type(text: str) -> TcpType:
    try:
        return TcpType(text.lower())
    except ValueError:
        raise DecodeError(f"candidate: unknown tcptype {_show(text)}") from None


def _unsupported_or_malformed(name: str, text: str) -> DecodeError:
    """A well-formed token we do not support is to be ignored (RFC 8839 §5.1); anything else is
    malformed."""
    if _TOKEN.fullmatch(text):
        return UnsupportedCandidateError(f"candidate: {name} {_show(text)} not supported")
    return DecodeError(f"candidate: bad {name} {_show(text)}")


def _is_mdns_name(host: str) -> bool:
    return len(host) <= 253 and _MDNS_NAME.fullmatch(host) is not None


def _has_letter(text: str) -> bool:
    return any(character.isalpha() for character in text)


def _ip_literal(host: str) -> str:
    try:
        return normalize_host(host)
    except StunLocalProtocolError:
        raise LocalProtocolError(f"{_show(host)} is not an IP address literal") from None


def _connection_address(host: str) -> str:
    """A candidate's host: an IP literal, normalised, or an mDNS name, as given."""
    return host if _is_mdns_name(host) else _ip_literal(host)


def _random_ice_chars(rng: RandomSource, count: int) -> str:
    bits = rng.getrandbits(6 * count)
    return "".join(ICE_CHARS[(bits >> (6 * index)) & 63] for index in range(count))
