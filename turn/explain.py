"""What went wrong with a TURN server, in words a person reads, and what to do about it.

:func:`explain_turn` extends :func:`stun.explain.explain` (which words timeouts, refused and reset
connections, TLS and STUN's own error codes) with what a TURN server's answers mean (RFC 8656
§19, RFC 6062 §6.3) and with the step of a probe they answered: a 403 to a CreatePermission is
the server's peer policy, a 486 means the user holds as many allocations as allowed, a 401 with
TURN REST API credentials means the secret or the clocks disagree. Hints name the options of
both servers an operator is likely to run: ``icestack serve turn`` and coturn's ``turnserver``.
"""

from __future__ import annotations

from dataclasses import dataclass

from stun.attributes import Realm
from stun.errors import ConnectTimeout, ErrorResponse, TransactionTimeout
from stun.explain import Explanation, answered, explain

#: The kinds of credentials a probe can present.
LONG_TERM = "long-term"
REST_API = "rest-api"


@dataclass(frozen=True, slots=True, kw_only=True)
class Situation:
    """Where an error met a probe: its ``step`` (``"allocate"``, ``"permissions"``, ...),
    the server ``target`` (``host:port``) and ``transport``, the ``credentials`` kind
    (:data:`LONG_TERM` or :data:`REST_API`) and, for REST API credentials, the ``username``
    (which carries its expiry)."""

    step: str
    target: str
    transport: str
    credentials: str = LONG_TERM
    username: str | None = None
    peer: str | None = None


#: What a TURN error code means, and what to do, whatever the step (RFC 8656 §19).
_TURN_CODES: dict[int, tuple[str, str]] = {
    437: (
        "it holds no allocation for this client, or another on the same address and port",
        "try again; if it persists, the server lost its state (a restart) or something in "
        "between rewrites the client's address",
    ),
    441: (
        "it found the credentials of this request different from the allocation's",
        "a server bug, or a proxy altering messages",
    ),
    442: (
        "it does not relay this transport",
        "a TCP allocation (RFC 6062) needs TCP relays on: coturn runs them unless "
        "--no-tcp-relay, icestack serve turn unless --no-tcp-relay",
    ),
    486: (
        "this user holds as many allocations as the server allows",
        "the probe needs two at once: raise the quota (icestack serve turn --user-quota, coturn "
        "--user-quota), or wait for the user's allocations to expire",
    ),
    508: (
        "the server has no capacity left: its allocations or relay ports are used up",
        "raise its limits (icestack serve turn --total-quota, --min-port/--max-port; coturn "
        "--total-quota, --min-port/--max-port)",
    ),
}


def explain_turn(error: BaseException, situation: Situation) -> Explanation:
    """Describe ``error``, met at ``situation``; the explanation starts with the step."""
    explanation = _explain(error, situation)
    return Explanation(f"{situation.step}: {explanation.what}", explanation.hint)


def _explain(error: BaseException, situation: Situation) -> Explanation:
    if isinstance(error, ErrorResponse):
        what = answered(error)
        if error.code == 401:
            return _unauthorized(error, what, situation)
        if error.code == 403:
            return _forbidden(what, situation)
        meaning = _TURN_CODES.get(error.code)
        if meaning is not None:
            return Explanation(f"{what}: {meaning[0]}", meaning[1])
    # Connecting (in the connect step, or a ConnectTimeout in any step) is said in stun's words.
    connecting = isinstance(error, ConnectTimeout) or situation.step == "connect"
    timeout = isinstance(error, TransactionTimeout | TimeoutError) and not connecting
    if timeout and situation.transport == "udp":
        return Explanation(
            str(error),
            "nothing answers TURN there over UDP: check the host and port, and that no firewall "
            "drops UDP; if UDP is blocked, try ?transport=tcp or turns:",
        )
    if timeout:
        return Explanation(
            str(error),
            f"the server took the {situation.transport.upper()} connection but did not answer "
            "in time: it may be overloaded, or not a TURN server",
        )
    return explain(
        error, target=situation.target, transport=situation.transport, with_credentials=True
    )


def _unauthorized(error: ErrorResponse, what: str, situation: Situation) -> Explanation:
    realm = error.response.get(Realm) if error.response is not None else None
    if realm is None:
        return Explanation(
            f"{what} without a REALM",
            "it does not use the long-term credential mechanism (RFC 8489 §9.2) that TURN "
            "clients speak",
        )
    if situation.credentials == REST_API:
        expiry = (situation.username or "").partition(":")[0]
        return Explanation(
            f"{what}: it refused the TURN REST API credentials (username {situation.username!r})",
            "check that --secret is the server's shared secret (coturn: static-auth-secret with "
            "use-auth-secret; icestack serve turn: --static-auth-secret), and that this host's "
            f"clock agrees with the server's: the username is valid until Unix time {expiry}",
        )
    return Explanation(
        f"{what}: it refused the username and password for realm {realm.value!r}",
        "check --user and --password (a server answers the same to an unknown user and to a "
        f"wrong password), and that the user is one of realm {realm.value!r}: the key is made "
        "from the username, the realm and the password",
    )


def _forbidden(what: str, situation: Situation) -> Explanation:
    peer = f" {situation.peer}" if situation.peer else ""
    if situation.step == "permissions":
        return Explanation(
            f"{what}: its peer policy refuses to relay to{peer}, the other allocation's relayed "
            "address on the server itself",
            "allow peers of the relay address's range: icestack serve turn relays to another "
            "allocation's relayed address, but on loopback needs --allow-loopback-peers and on "
            "private addresses --allowed-peer-ip; coturn: --allow-loopback-peers, "
            "--allowed-peer-ip, and no --denied-peer-ip covering it",
        )
    return Explanation(
        f"{what}: the server refuses this request{peer}",
        "its policy forbids it; see the server's log for the reason",
    )
