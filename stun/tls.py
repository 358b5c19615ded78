"""TLS contexts for STUN over TLS (RFC 8489 §6.2.3) and throw-away self-signed certificates.

The stdlib :mod:`ssl` module does the TLS; ``cryptography`` only makes certificates, for tests and
for a server started with ``--tls`` and no certificate (which then warns: clients cannot verify it).
:func:`self_signed_server_context` makes such a certificate in a private temporary folder, loads
it and removes the folder at once, so no private key is left on disk.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Paths of a PEM certificate and its private key."""

    certificate: Path
    private_key: Path


def make_self_signed(
    directory: Path | None = None,
    *,
    common_name: str = "localhost",
    names: tuple[str, ...] = ("localhost",),
    addresses: tuple[str, ...] = ("127.0.0.1", "::1"),
    days: int = 7,
) -> CertificateFiles:
    """Write a fresh self-signed ECDSA P-256 certificate and key into ``directory`` (or a new
    ``icestack-tls-*`` temporary folder, which the caller then owns and must remove; see
    :func:`temporary_self_signed`).

    The certificate names ``names`` (DNS) and ``addresses`` (IP) in subjectAltName, so a client can
    verify it by host name or IP literal once it trusts the certificate itself (``--cafile``). It
    is a server certificate, not a CA (``CA:FALSE``, key usage digitalSignature, extended key usage
    serverAuth): trusting it trusts this one server, never certificates its key might sign. The
    key file is created readable by its owner only; no moment exists where others can read it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    target = directory or Path(tempfile.mkdtemp(prefix="icestack-tls-"))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = CertificateFiles(target / "cert.pem", target / "key.pem")
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(files.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        os.fchmod(key_file.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        key_file.write(pem)
    return files


@contextlib.contextmanager
def temporary_self_signed() -> Iterator[CertificateFiles]:
    """:func:`make_self_signed` into a fresh private temporary folder (``icestack-tls-*``),
    removed with everything in it when the ``with`` block ends, however it ends."""
    directory = Path(tempfile.mkdtemp(prefix="icestack-tls-"))
    try:
        yield make_self_signed(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def self_signed_server_context() -> tuple[ssl.SSLContext, str]:
    """A server context with a throw-away self-signed certificate for localhost, 127.0.0.1 and
    ::1 (nothing of it stays on disk), and the certificate's SHA-256 fingerprint, for clients
    that pin it."""
    with temporary_self_signed() as files:
        context = server_context(files.certificate, files.private_key)
        der = ssl.PEM_cert_to_DER_cert(files.certificate.read_text())
    return context, hashlib.sha256(der).hexdigest()


def server_context(
    certificate: Path | str, private_key: Path | str, password: str | None = None
) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or newer, no compression (RFC 8489 §6.2.3). ``password``
    decrypts an encrypted private key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(str(certificate), str(private_key), password)
    return context


def client_context(cafile: Path | str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """A client-side context that verifies the server (RFC 8489 §6.2.3) against the system CAs,
    or against ``cafile``; ``verify=False`` turns verification off (diagnostics only)."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
