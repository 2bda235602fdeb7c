"""A throw-away PKI for tests and demos: a CA, a server certificate for loopback and,
optionally, a client certificate, made with ``cryptography`` (ECDSA P-256, valid 30 days).

Never for production: the CA's key lies beside its certificate. Keys are written 0600.

Example:
    >>> import tempfile
    >>> from security.tls import client_context, server_context
    >>> pki = make_test_pki(Path(tempfile.mkdtemp()))
    >>> server, client = server_context(pki.server_files), client_context(pki.ca_cert)
    >>> oct(pki.server_key.stat().st_mode & 0o777)
    '0o600'
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from security.tls import TLSFiles

__all__ = ["PKI", "make_test_pki"]

_VALID = dt.timedelta(days=30)


@dataclass(frozen=True)
class PKI:
    """The files :func:`make_test_pki` wrote (client ones only when asked for)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path | None = None
    client_key: Path | None = None

    @property
    def server_files(self) -> TLSFiles:
        """What a server presents, with the CA its clients trust."""
        return TLSFiles(self.server_cert, self.server_key, self.ca_cert)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _builder(subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey
             ) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def _leaf(directory: Path, name: str, subject: str, ca: x509.Certificate,
          ca_key: ec.EllipticCurvePrivateKey, usage: x509.ObjectIdentifier,
          hosts: Sequence[str]) -> tuple[Path, Path]:
    key = _key()
    builder = (_builder(subject, ca.subject, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                            False, False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    _write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))
    _write_key(key_path, key)
    return cert_path, key_path


def make_test_pki(directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost"), *,
                  client: bool = False, name: str = "recdrill test CA") -> PKI:
    """Write ``ca.pem``/``ca.key``, ``server.pem``/``server.key`` (subject alternative names:
    ``hosts``, IP addresses as IP entries) and, with ``client``, ``client.pem``/``client.key``
    into ``directory`` (created). Two calls give two unrelated CAs.

    Example:
        >>> import tempfile
        >>> make_test_pki(Path(tempfile.mkdtemp()), client=True).client_cert.name
        'client.pem'
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (_builder(name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_cert(directory / "ca.pem", ca)
    _write_key(directory / "ca.key", ca_key)
    server = _leaf(directory, "server", hosts[0] if hosts else "server", ca, ca_key,
                   ExtendedKeyUsageOID.SERVER_AUTH, hosts)
    pair = (_leaf(directory, "client", "recdrill test client", ca, ca_key,
                  ExtendedKeyUsageOID.CLIENT_AUTH, ()) if client else (None, None))
    return PKI(directory / "ca.pem", directory / "ca.key", *server, *pair)
