"""The TURN server's lean Refresh (TurnServerCore.relay_from_client) against the typed path
(handle_datagram) on generated requests: two servers in the same state, one fed through each, must
answer with the same bytes from and to the same addresses, count the same outcomes and keep the
same tables (allocations, their expiry and timers, events, the authentication counters).

The requests mix what the lean path answers — Refresh with LIFETIME or none, USERNAME, REALM,
NONCE, SOFTWARE, PASSWORD-ALGORITHMS and PASSWORD-ALGORITHM, MESSAGE-INTEGRITY or -SHA256 (MD5 and
SHA-256 keys), FINGERPRINT or none, in any order — with everything it must leave to the typed
path: LIFETIME 0 (deletion, of one family too), stale, future, garbled and other clients'
nonces, a wrong key, realm or user, another user's allocation (441), no allocation (437), USERHASH,
REQUESTED-ADDRESS-FAMILY, DONT-FRAGMENT, unknown and repeated attributes, both integrity
attributes, bad FINGERPRINTs, and flipped, cut and extended bytes; while time passes nonce and
allocation lifetimes.
"""

from __future__ import annotations

import random
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import (
    Address,
    AddressFamily,
    AlgorithmEntry,
    Attribute,
    Integrity,
    Message,
    MessageClass,
    Method,
    Nonce,
    PasswordAlgorithm,
    PasswordAlgorithmId,
    PasswordAlgorithms,
    Realm,
    Software,
    Userhash,
    Username,
    long_term_key,
    make_address,
    userhash,
)
from stun.attributes import UnknownAttribute
from stun.integrity import SecurityFeatures, fingerprint
from stun.nonces import NonceIssuer
from turn import DontFragment, Lifetime, RequestedAddressFamily
from turn.rest_api import rest_api_password, rest_api_username
from turn.server import TurnServerCore

from ..turn.harness import (
    CLIENT,
    EPOCH,
    NONCE_SECRET,
    OTHER_CLIENT,
    PASSWORDS,
    REALM,
    REST_SECRET,
    SERVER,
    Client,
    make_server,
)
from .turn_lean import CLIENT_V6, SERVER_V6, compare_from_client, ready

SHA256 = PasswordAlgorithmId.SHA256
MD5 = PasswordAlgorithmId.MD5
#: The server offers SHA-256 then MD5 (LongTermCredentials.from_passwords).
OFFERED = PasswordAlgorithms((AlgorithmEntry(SHA256), AlgorithmEntry(MD5)))
#: Nonces as the servers issue them (same secret, same features): the tests' own issuer.
ISSUER = NonceIssuer(secret=NONCE_SECRET, features=SecurityFeatures.PASSWORD_ALGORITHMS)
PLAIN_ISSUER = NonceIssuer(secret=NONCE_SECRET)  # no "password algorithms" feature bit
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: What may come with a Refresh besides its usual attributes (SOFTWARE is usual too).
EXTRAS = (
    "software", "software", "family4", "family6", "dont fragment", "unknown required",
    "unknown optional", "lifetime again", "userhash",
)  # fmt: skip
#: A client whose allocation has an IPv4 relay only, and one with no allocation.
SINGLE_CLIENT = OTHER_CLIENT
NO_CLIENT = make_address("198.51.100.9", 40000)
clients = st.sampled_from(
    (
        (CLIENT, SERVER), (CLIENT, SERVER), (CLIENT_V6, SERVER_V6), (SINGLE_CLIENT, SERVER),
        (NO_CLIENT, SERVER),
    )
)  # fmt: skip


def _servers() -> tuple[TurnServerCore, TurnServerCore]:
    """Two servers made alike (:func:`ready`), where SINGLE_CLIENT holds an IPv4 allocation too."""
    servers = []
    for _ in range(2):
        server, _ = ready(None)
        Client(server, address=SINGLE_CLIENT).allocate(Lifetime(900))
        servers.append(server)
    return servers[0], servers[1]


@st.composite
def refreshes(draw: st.DrawFn) -> dict[str, Any]:
    """What a Refresh request is made of; built when the test knows ``now`` (nonces age). Half
    are of the shapes the lean path answers, with credentials that pass."""
    if draw(st.booleans()):
        return {
            "lifetime": draw(st.sampled_from((None, 600, 600, 1, 3601, 0xFFFFFFFF, 0))),
            "user": draw(st.sampled_from(("alice", "alice", "alice", "bob"))),
            "password": "right",
            "realm": REALM,
            "nonce": draw(st.sampled_from((0.0, 5.0, 599.0))),
            "algorithm": draw(st.sampled_from(("md5", "sha256"))),
            "integrity": draw(st.sampled_from((Integrity.SHA1, Integrity.SHA256))),
            "extra": draw(st.sampled_from(([], [], ["software"], *([e] for e in EXTRAS)))),
            "order": draw(st.randoms(use_true_random=False)),
            "fingerprint": draw(st.sampled_from(("yes", "no"))),
            "transaction_id": draw(st.binary(min_size=12, max_size=12)),
        }
    return {
        "lifetime": draw(st.sampled_from((None, 600, 600, 0, 1, 3601, 0xFFFFFFFF))),
        "user": draw(st.sampled_from(("alice", "alice", "alice", "bob", "nobody"))),
        "password": draw(st.sampled_from(("right", "right", "right", "wrong"))),
        "realm": draw(st.sampled_from((REALM, REALM, REALM, "elsewhere"))),
        # the nonce's age in seconds (negative: issued in the future), or a broken one
        "nonce": draw(
            st.sampled_from((0.0, 0.0, 5.0, 599.0, 600.0, 900.0, -5.0, "other", "plain", "junk"))
        ),
        "algorithm": draw(
            st.sampled_from(("md5", "md5", "sha256", "sha256", "chosen only", "bid down"))
        ),
        "integrity": draw(st.sampled_from(tuple(Integrity))),
        "extra": draw(st.lists(st.sampled_from(EXTRAS), max_size=2)),
        "order": draw(st.randoms(use_true_random=False)),
        "fingerprint": draw(st.sampled_from(("yes", "yes", "no", "bad"))),
        "transaction_id": draw(st.binary(min_size=12, max_size=12)),
    }


def _nonce(spec: dict[str, Any], client: Address, now: float) -> str:
    age = spec["nonce"]
    if age == "other":
        return ISSUER.issue(make_address("198.51.100.99", 1), now)
    if age == "plain":
        return PLAIN_ISSUER.issue(client, now)
    if age == "junk":
        return "obMatJos2AAAAjunk"
    return ISSUER.issue(client, max(now - age, 0.0))


def build(spec: dict[str, Any], client: Address, now: float) -> bytes:
    """The request ``spec`` describes, from ``client`` at ``now``."""
    user = spec["user"]
    password = PASSWORDS.get(user, "x") if spec["password"] == "right" else "wrong"
    attributes: list[Attribute] = [Username(user), Realm(spec["realm"])]
    attributes.append(Nonce(_nonce(spec, client, now)))
    algorithm = spec["algorithm"]
    key_algorithm = MD5
    if algorithm == "sha256":
        attributes += [OFFERED, PasswordAlgorithm(SHA256)]
        key_algorithm = SHA256
    elif algorithm == "chosen only":
        attributes.append(PasswordAlgorithm(SHA256))
        key_algorithm = SHA256
    elif algorithm == "bid down":
        attributes += [PasswordAlgorithms((AlgorithmEntry(MD5),)), PasswordAlgorithm(MD5)]
    if spec["lifetime"] is not None:
        attributes.append(Lifetime(spec["lifetime"]))
    extras: dict[str, Attribute] = {
        "software": Software("client 1.0"),
        "family4": RequestedAddressFamily(AddressFamily.IPV4),
        "family6": RequestedAddressFamily(AddressFamily.IPV6),
        "dont fragment": DontFragment(),
        "unknown required": UnknownAttribute(0x0030, b"abcd"),
        "unknown optional": UnknownAttribute(0x8030, b"ab"),
        "lifetime again": Lifetime(700),
        "userhash": Userhash(userhash(user, REALM)),
    }
    attributes += [extras[name] for name in spec["extra"]]
    spec["order"].shuffle(attributes)
    message = Message(Method.REFRESH, MessageClass.REQUEST, spec["transaction_id"], attributes)
    key = long_term_key(user, REALM, password, key_algorithm)
    fingerprinted = spec["fingerprint"] != "no"
    data = message.encode(key=key, integrity=spec["integrity"], fingerprint=fingerprinted)
    if spec["fingerprint"] == "bad":
        data = data[:-4] + struct.pack("!I", fingerprint(data[:-8]) ^ 1)
    return data


steps = st.lists(
    st.tuples(
        st.sampled_from((0.0, 0.0, 1.0, 30.0, 100.0, 400.0, 700.0)),
        clients,
        refreshes(),
        st.sampled_from(("none", "none", "none", "flip", "cut", "extend")),
        st.integers(0, 1 << 16),
    ),
    min_size=3,
    max_size=20,
)


def _corrupt(data: bytes, change: str, seed: int) -> bytes:
    """``data`` with a byte flipped, cut or extended (or as it is), as ``seed`` says."""
    if change == "flip":
        index = seed % len(data)
        return data[:index] + bytes([data[index] ^ (seed >> 8 | 1) & 0xFF]) + data[index + 1 :]
    if change == "cut":
        return data[: seed % len(data)]
    if change == "extend":
        return data + seed.to_bytes(3, "big")
    return data


@SETTINGS
@given(traffic=steps)
def test_lean_and_typed_paths_refresh_alike(
    traffic: list[tuple[float, tuple[Address, Address], dict[str, Any], str, int]],
) -> None:
    lean, typed = _servers()
    now = 1.0
    for wait, (client, local), spec, change, seed in traffic:
        now += wait
        data = _corrupt(build(spec, client, now), change, seed)
        compare_from_client(lean, typed, data, client, local, now)


def test_the_common_shapes_take_the_lean_path() -> None:
    """A Refresh as icestack's TurnClient sends it (SHA-256) and as coturn's uclient does (MD5)
    does not reach handle_datagram (checked by removing it), and extends the allocation."""
    server, _ = ready(None)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the typed path was taken")

    server.handle_datagram = refuse  # type: ignore[method-assign]
    now = 10.0
    for algorithm, integrity, extra in (
        ("sha256", Integrity.SHA256, ["software"]),
        ("md5", Integrity.SHA1, []),
    ):
        spec = {
            "lifetime": 600, "user": "alice", "password": "right", "realm": REALM, "nonce": 0.0,
            "algorithm": algorithm, "integrity": integrity, "extra": extra,
            "order": random.Random(1), "fingerprint": "yes",
            "transaction_id": bytes(12),
        }  # fmt: skip
        out = server.relay_from_client(build(spec, CLIENT, now), SERVER, tuple(CLIENT), now)
        assert out is not None and (out.local, out.remote) == (SERVER, CLIENT)
        answer = Message.decode(out.data)
        assert answer.message_class is MessageClass.SUCCESS_RESPONSE
        assert answer.get(Lifetime) == Lifetime(600)
        now += 1.0
    allocation = next(a for a in server.allocations() if a.five_tuple.client == CLIENT)
    assert allocation.expires_at == now - 1.0 + 600


def test_every_corrupted_byte_of_a_refresh_is_decided_alike() -> None:
    """Each byte of a Refresh of each common shape flipped three ways: the lean path answers only
    what the typed path answers, the same way."""
    lean, _ = ready(None)
    typed, _ = ready(None)
    now = 5.0
    for algorithm, integrity in (("sha256", Integrity.SHA256), ("md5", Integrity.SHA1)):
        spec = {
            "lifetime": 600, "user": "alice", "password": "right", "realm": REALM, "nonce": 0.0,
            "algorithm": algorithm, "integrity": integrity, "extra": ["software"],
            "order": random.Random(2), "fingerprint": "yes",
            "transaction_id": bytes(range(12)),
        }  # fmt: skip
        original = build(spec, CLIENT, now)
        for index in range(len(original)):
            for flip in (0x01, 0x80, 0xFF):
                data = bytearray(original)
                data[index] ^= flip
                compare_from_client(lean, typed, bytes(data), CLIENT, SERVER, now)


def test_an_expired_rest_api_username_is_left_to_the_typed_path() -> None:
    """A REST API user's Refresh is answered on the lean path while the username lasts; once it
    has expired, the typed path refuses it (401) and the allocation is not extended."""
    servers = []
    for _ in range(2):
        server, _ = make_server(rest_secret=REST_SECRET)
        username = rest_api_username("carol", EPOCH + 100)
        client = Client(
            server, username=username, password=rest_api_password(REST_SECRET, username)
        )
        client.allocate(Lifetime(900))
        servers.append((server, client))
    (lean, client), (typed, _) = servers
    answers = []
    for now in (50.0, 150.0):
        message = Message(
            Method.REFRESH, MessageClass.REQUEST, bytes(12), [Lifetime(600), *client.credentials()]
        )
        data = message.encode(key=client.key, fingerprint=True)
        got = compare_from_client(lean, typed, data, CLIENT, SERVER, now)
        assert got is not None
        answers.append(Message.decode(got.data).error_code)
    assert answers[0] is None and answers[1] is not None and answers[1].code == 401
