"""Throw-away self-signed TLS certificates for tests that run a TLS server on loopback."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateFiles:
    """Where a PEM certificate and its unencrypted PEM private key were written."""

    certificate: Path
    private_key: Path


def write_self_signed(
    directory: Path,
    *,
    common_name: str = "localhost",
    dns_names: tuple[str, ...] = ("localhost",),
    ip_addresses: tuple[str, ...] = ("127.0.0.1", "::1"),
    valid_for: datetime.timedelta = datetime.timedelta(days=2),
) -> CertificateFiles:
    """Write a fresh ECDSA P-256 certificate, signed by its own key, and that key to ``directory``.

    Its subjectAltName lists ``dns_names`` and ``ip_addresses``, so a client that trusts this one
    certificate (``ssl.create_default_context(cafile=...)``) verifies the server by either.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alternative_names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = CertificateFiles(
        certificate=directory / "certificate.pem", private_key=directory / "private-key.pem"
    )
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.private_key.touch(mode=0o600)
    files.private_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
