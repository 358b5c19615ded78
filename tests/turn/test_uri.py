"""turn.uri: TURN (RFC 7065) and STUN (RFC 7064) URIs, parsed, refused and printed back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turn import ClientTransport, DecodeError, ServerUri, UriScheme, parse_uri

TCP, TLS, UDP = ClientTransport.TCP, ClientTransport.TLS, ClientTransport.UDP


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "transport"),
    [
        ("turn:example.org", UriScheme.TURN, "example.org", 3478, UDP),
        ("turn:example.org?transport=udp", UriScheme.TURN, "example.org", 3478, UDP),
        ("turn:example.org?transport=tcp", UriScheme.TURN, "example.org", 3478, TCP),
        ("turns:example.org", UriScheme.TURNS, "example.org", 5349, TLS),
        ("turns:example.org?transport=tcp", UriScheme.TURNS, "example.org", 5349, TLS),
        ("turn:192.0.2.1:3479", UriScheme.TURN, "192.0.2.1", 3479, UDP),
        ("turn:[2001:DB8:0::1]:443?transport=tcp", UriScheme.TURN, "2001:db8::1", 443, TCP),
        ("turns:[::1]", UriScheme.TURNS, "::1", 5349, TLS),
        ("stun:stun.L.Google.com:19302", UriScheme.STUN, "stun.l.google.com", 19302, UDP),
        ("stuns:stun.example.net", UriScheme.STUNS, "stun.example.net", 5349, TLS),
        # ABNF literals match in any case; an empty port is the default one (RFC 3986 §3.2.3).
        ("TURN:example.org?TRANSPORT=TCP", UriScheme.TURN, "example.org", 3478, TCP),
        ("turn:example.org:", UriScheme.TURN, "example.org", 3478, UDP),
        ("turn:_turn-1.example", UriScheme.TURN, "_turn-1.example", 3478, UDP),
    ],
)
def test_parse(
    text: str, scheme: UriScheme, host: str, port: int, transport: ClientTransport
) -> None:
    assert parse_uri(text) == ServerUri(scheme, host, port, transport)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("turn", "no ':'"),
        ("http:example.org", "scheme"),
        ("turn://example.org", "'//'"),
        ("turn:alice@example.org", "user information"),
        ("turn:", "no host"),
        ("turn::3478", "no host"),
        ("turn:2001:db8::1", "brackets"),
        ("turn:[2001:db8::1", "without ']'"),
        ("turn:[192.0.2.1]", "not an IPv6 address"),
        ("turn:[::1]x", "after the host"),
        ("turn:256.0.0.1", "not an IPv4 address"),
        ("turn:1.2.3", "not an IPv4 address"),
        ("turn:exa mple.org", "not a host name"),
        ("turn:example..org", "not a host name"),
        ("turn:-example.org", "not a host name"),
        ("turn:example.org:0", "port"),
        ("turn:example.org:65536", "port"),
        ("turn:example.org:http", "port"),
        ("turn:example.org:" + "9" * 5000, "port"),
        ("turn:example.org:\N{SUPERSCRIPT TWO}", "port"),
        ("stun:example.org?transport=udp", "no query"),
        ("turn:example.org?", "only query"),
        ("turn:example.org?transport", "only query"),
        ("turn:example.org?proto=udp", "only query"),
        ("turn:example.org?transport=sctp", "not supported"),
        ("turns:example.org?transport=udp", "DTLS"),
    ],
)
def test_refused(text: str, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        parse_uri(text)


def test_printed_in_the_shortest_form() -> None:
    assert str(parse_uri("turn:example.org:3478?transport=udp")) == "turn:example.org"
    assert str(parse_uri("turns:[2001:db8::1]:5349?transport=tcp")) == "turns:[2001:db8::1]"
    assert str(parse_uri("turn:[::1]:3479?transport=tcp")) == "turn:[::1]:3479?transport=tcp"
    assert parse_uri("turns:x").scheme.secure and parse_uri("turn:x").is_turn
    assert not parse_uri("stuns:x").is_turn


_labels = st.from_regex(r"[a-z0-9_]([a-z0-9_-]{0,10}[a-z0-9_])?", fullmatch=True).filter(
    lambda label: not label.isdigit()
)
_hosts = st.one_of(
    st.lists(_labels, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)


@given(
    scheme=st.sampled_from(UriScheme),
    host=_hosts,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    tcp=st.booleans(),
)
def test_parse_and_print_round_trip(
    scheme: UriScheme, host: str, port: int | None, tcp: bool
) -> None:
    text = f"{scheme.value}:{host}" + (f":{port}" if port is not None else "")
    if scheme in (UriScheme.TURN, UriScheme.TURNS) and tcp:
        text += "?transport=tcp"
    uri = parse_uri(text)
    assert uri.port == (port or scheme.default_port)
    assert parse_uri(str(uri)) == uri


@given(st.text(max_size=60))
def test_garbage_raises_only_decode_error(text: str) -> None:
    for candidate in (text, "turn:" + text, "turns:[" + text, "stun:x:" + text):
        try:
            uri = parse_uri(candidate)
        except DecodeError:
            continue
        assert parse_uri(str(uri)) == uri
