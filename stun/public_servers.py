"""The built-in list of well-known public STUN servers that ``icestack stun --public`` and
``icestack nat --public`` probe, and the opt-in ``public`` tests use.

Each entry says who runs the server, the address and transports the operator publishes, and
where that is written down, so that a reader can check it and a stale entry can be found. The
list is data, not a recommendation: these servers are run by others, for their own products,
and may change or go away; probing one sends it a Binding request or a few, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class PublicServer:
    """One public STUN server: its operator, address, the transports it is known to serve, and
    where that is documented (``source``)."""

    name: str
    operator: str
    host: str
    port: int
    transports: tuple[str, ...]
    source: str
    #: Whether the operator says it does RFC 5780 behaviour discovery (OTHER-ADDRESS).
    rfc5780: bool = False

    @property
    def target(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


#: The server ``icestack stun``, ``nat`` and ``ice`` ask when given none: the first of the list.
DEFAULT_PUBLIC_SERVER = "stun.l.google.com:19302"

PUBLIC_SERVERS: tuple[PublicServer, ...] = (
    PublicServer(
        name="google",
        operator="Google",
        host="stun.l.google.com",
        port=19302,
        transports=("udp",),
        source="the STUN server of Google's WebRTC samples and of many WebRTC stacks' examples "
        "(https://github.com/webrtc/samples); UDP only",
    ),
    PublicServer(
        name="cloudflare",
        operator="Cloudflare",
        host="stun.cloudflare.com",
        port=3478,
        transports=("udp", "tcp"),
        source="Cloudflare Realtime TURN service documentation "
        "(https://developers.cloudflare.com/realtime/turn/): STUN on 3478 over UDP and TCP",
    ),
    PublicServer(
        name="nextcloud",
        operator="Nextcloud",
        host="stun.nextcloud.com",
        port=443,
        transports=("udp",),
        source="the default STUN server of Nextcloud Talk (https://github.com/nextcloud/spreed, "
        "its admin settings)",
    ),
    PublicServer(
        name="stunprotocol",
        operator="the Stuntman project",
        host="stun.stunprotocol.org",
        port=3478,
        transports=("udp", "tcp"),
        source="https://www.stunprotocol.org/ (Stuntman, an RFC 5780 server; its public "
        "instance has been intermittently offline)",
        rfc5780=True,
    ),
)
