"""``icestack serve turn --config`` with coturn's ``turnserver.conf``: Debian's own file, every
example in it uncommented, and a realistic operator's file; and how lines are read."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from stun.tls import make_self_signed
from tests.cli.test_cli import Running, icestack
from tests.cli.test_serve_turn import LISTENING, RELAYING, parse_address, relay_through
from tests.net.loopback import closed_port, run
from turn.server import rest_api_password, rest_api_username
from turn.turnserver_conf import NO_EFFECT, Line, lines

DEBIAN_CONF = Path("/etc/turnserver.conf")
#: The examples of Debian's file are commented-out option lines: ``#name``, ``#name=value`` or
#: ``#name "value"`` (prose comments have spaces in their first word's line).
EXAMPLE = re.compile(r"^#([A-Za-z][\w-]*(=.*|\s+\".*\")?)$", re.M)
NOTE = r"^icestack: note: (\S+) line (\d+): (\S+) has no effect here: .+$"


def debian_conf() -> str:
    if not DEBIAN_CONF.is_file():
        pytest.skip(f"no {DEBIAN_CONF}: Debian's coturn package is not installed")
    return DEBIAN_CONF.read_text()


def test_lines_are_read_as_coturn_reads_them() -> None:
    text = (
        "# a comment\n\n  realm = example.org  \nverbose\nlisten 127.0.0.1:3478\n"
        "pidfile=\"/var/run/turnserver.pid\"\n--no-tcp=false\ncipher-list 'DEFAULT'\n"
    )
    assert list(lines(text)) == [
        Line(3, "realm", "example.org"),
        Line(4, "verbose", ""),
        Line(5, "listen", "127.0.0.1:3478"),
        Line(6, "pidfile", "/var/run/turnserver.pid"),
        Line(7, "no-tcp", "false"),
        Line(8, "cipher-list", "DEFAULT"),
    ]


def test_debians_own_file_starts_with_a_note_per_option_without_effect() -> None:
    active = list(lines(debian_conf()))
    with Running(
        "serve", "turn", "--config", str(DEBIAN_CONF), "--user", "a:b", "--listen", "127.0.0.1:0"
    ) as server:
        server.wait_for(RELAYING, 1)
        assert server.interrupt() == 0
        notes = re.findall(NOTE, server.stderr(), re.M)
    # Each active line of Debian's file is an option that has no effect here: one note each.
    assert [(int(number), name) for _, number, name in notes] == [
        (line.number, line.name) for line in active
    ]
    assert all(name in NO_EFFECT for _, _, name in notes)


def test_every_example_of_debians_file_is_known(tmp_path: Path) -> None:
    """Uncommented, the examples make a file icestack cannot run, and says so in one message:
    every line it cannot honour, with its number and why; no option is unknown to it."""
    uncommented = tmp_path / "turnserver.conf"
    uncommented.write_text(EXAMPLE.sub(r"\1", debian_conf()))
    options = {line.number: line.name for line in lines(uncommented.read_text())}
    assert len(options) > 100
    completed = icestack("serve", "turn", "--config", str(uncommented))
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    first, *problems = completed.stderr.splitlines()
    assert first == (
        f"icestack: error: --config {uncommented}: {len(problems)} lines cannot be used:"
    )
    reported = {}
    for problem in problems:
        match = re.fullmatch(r"  line (\d+): (.+)", problem)
        assert match is not None, problem
        reported[int(match.group(1))] = match.group(2)
    assert "unknown option" not in completed.stderr
    for number, text in reported.items():
        assert options[number] in text or "turnadmin" in text  # each names its option
    names = {options[number] for number in reported}
    assert {"no-auth", "userdb", "proc-user", "listening-device"} <= names
    # What icestack does or ignores is not reported: realm, user, relay-ip, min-port, cert ...
    assert not names & {
        "realm",
        "relay-ip",
        "external-ip",
        "min-port",
        "max-port",
        "cert",
        "verbose",
        "no-cli",
    }


def test_an_operators_file_runs(tmp_path: Path) -> None:
    """A coturn deployment's file, as found in guides: it runs as it is, relays over UDP and TLS
    with REST API credentials, logs the sessions, and notes what has no effect."""
    files = make_self_signed(tmp_path)
    port, tls_port = closed_port("127.0.0.1"), closed_port("127.0.0.1")
    low = closed_port("127.0.0.1")
    log = tmp_path / "turn.log"
    config = tmp_path / "turnserver.conf"
    config.write_text(
        f"""# /etc/turnserver.conf
listening-port={port}
tls-listening-port={tls_port}
listening-ip=127.0.0.1
relay-ip=127.0.0.1
min-port={low}
max-port={low + 40}
fingerprint
lt-cred-mech
use-auth-secret
static-auth-secret=north
realm=turn.example.org
total-quota=100
user-quota=12
max-bps=0
stale-nonce=600
cert={files.certificate}
pkey={files.private_key}
cipher-list="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
no-tlsv1
no-tlsv1_1
no-cli
no-multicast-peers
allow-loopback-peers
denied-peer-ip=10.0.0.0-10.255.255.255
denied-peer-ip=172.16.0.0-172.31.255.255
denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
no-tcp-relay
verbose
log-file={log}
syslog
pidfile="/var/run/turnserver.pid"
mobility
"""
    )
    with Running("serve", "turn", "--config", str(config)) as server:
        listeners = {m.group(1): parse_address(m.group(2)) for m in server.wait_for(LISTENING, 3)}
        (relaying,) = server.wait_for(RELAYING, 1)
        assert relaying.groups() == ("127.0.0.1", str(low), str(low + 40))
        assert listeners == {
            "udp": ("127.0.0.1", port), "tcp": ("127.0.0.1", port), "tls": ("127.0.0.1", tls_port)
        }  # fmt: skip
        username = rest_api_username("erin", time.time() + 60)
        password = rest_api_password(b"north", username)
        for transport in ("udp", "tls"):
            address = listeners[transport]
            relayed = run(relay_through(transport, address, username, password, files.certificate))
            assert low <= relayed.port <= low + 40
        assert server.interrupt() == 0
        noted = {name for _, _, name in re.findall(NOTE, server.stderr(), re.M)}
    assert noted == {
        "fingerprint", "lt-cred-mech", "use-auth-secret", "stale-nonce", "cipher-list", "no-tlsv1",
        "no-tlsv1_1", "no-cli", "no-multicast-peers", "syslog", "pidfile", "mobility",
    }  # fmt: skip
    logged = log.read_text()
    session = rf"udp 127\.0\.0\.1:\d+ '{re.escape(username)}'"
    assert re.search(rf"{session}: allocated 127\.0\.0\.1:", logged)
    assert re.search(r"tls 127\.0\.0\.1:\d+ '.+': channel 0x4000 bound to 127\.0\.0\.1:\d+", logged)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user=a:b\nuser-quota=0\nlistening-ip=127.0.0.1\nlistening-port=0\nno-tcp\n", None),
        ("user=alice:0x0123456789abcdef0123456789abcdef\n", "a key made by turnadmin"),
        ("user=a:b\ncert=/etc/ssl/cert.pem\n", "cert and pkey go together"),
        ("user=a:b\nlistening-ip=turn.example.org\n", "listening-ip wants an IP address"),
        ("user=a:b\nlistening-port=http\n", "listening-port wants a port number"),
        ("user=a:b\nallocation-default-address-family=ipv6\n", "unless the client asks"),
        ("user=a:b\nrest-api-separator=.\n", "EXPIRY:NAME"),
        ("user=a:b\nrealm=a\nrealm=b\n", "line 3: realm again (line 2): give it once"),
        ("user=a:b\nmax-port=65536\n", "line 2: argument --max-port: must be in [1, 65535]"),
    ],
)
def test_coturn_forms(tmp_path: Path, text: str, message: str | None) -> None:
    config = tmp_path / "turnserver.conf"
    config.write_text(text)
    if message is None:  # accepted: user-quota=0 keeps the default, with a note
        with Running("serve", "turn", "--config", str(config)) as server:
            server.wait_for(RELAYING, 1)
            assert server.interrupt() == 0
            assert "line 2: user-quota has no effect here: 0 is coturn's 'no limit'" in (
                server.stderr()
            )
        return
    completed = icestack("serve", "turn", "--config", str(config), "--listen", "127.0.0.1:0")
    assert completed.returncode == 2
    assert completed.stderr.startswith(f"icestack: error: --config {config} line ")
    assert completed.stderr.count("\n") == 1
    assert message in completed.stderr
