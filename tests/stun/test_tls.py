"""The throw-away self-signed certificate: a server certificate, never a CA, with a private key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from stun.tls import make_self_signed


def test_the_certificate_is_a_server_certificate_not_a_ca(tmp_path: Path) -> None:
    files = make_self_signed(tmp_path)
    certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_the_key_is_never_readable_by_others(tmp_path: Path) -> None:
    previous = os.umask(0)  # the most permissive umask: the mode must come from the code alone
    try:
        fresh = make_self_signed(tmp_path)
        stale = tmp_path / "stale"
        stale.mkdir()
        (stale / "key.pem").write_bytes(b"an old key")
        (stale / "key.pem").chmod(0o644)
        over_stale = make_self_signed(stale)
    finally:
        os.umask(previous)
    for files in (fresh, over_stale):
        assert stat.S_IMODE(files.private_key.stat().st_mode) == 0o600
        assert files.private_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
