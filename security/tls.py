"""TLS from PEM files: server and client ``ssl.SSLContext`` objects and gRPC credentials.

A server presents ``cert`` (with its chain) and ``key``; a client verifies the server against a
CA file and its host name. ``ca`` in :class:`TLSFiles` is that CA: what clients, the front door
and health checks of this server trust; a server uses it itself only with ``client_auth``
(mutual TLS, the client must present a certificate the CA signed). Every function reads the
files it needs first and raises :class:`TLSFileError` naming the file that is missing,
unreadable, not PEM, encrypted, or a key that does not match its certificate.

Example:
    >>> files = tls_files("server.pem", "server.key", "ca.pem")  # doctest: +SKIP
    >>> server = server_context(files)  # doctest: +SKIP
    >>> client = client_context(files.ca)  # doctest: +SKIP
    >>> tls_files(None, None) is None
    True
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from security.errors import SecurityError

if TYPE_CHECKING:  # grpc is imported only where credentials are made
    import grpc

__all__ = ["TLSFileError", "TLSFiles", "cert_and_key_pem", "client_context",
           "grpc_channel_credentials", "grpc_server_credentials", "read_pem", "server_context",
           "tls_files"]

_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"


class TLSFileError(SecurityError, ValueError):
    """A certificate, key or CA file that cannot be used; the message names the file. A
    ValueError too: callers that check configuration catch it as a bad setting."""


@dataclass(frozen=True)
class TLSFiles:
    """A server's certificate (PEM, leaf first, then any intermediates), its unencrypted
    private key, and the CA that signed it (what clients verify it against; optional).

    Example:
        >>> TLSFiles(Path("s.pem"), Path("s.key")).ca is None
        True
    """

    cert: Path
    key: Path
    ca: Path | None = None


def tls_files(cert: str | Path | None, key: str | Path | None,
              ca: str | Path | None = None) -> TLSFiles | None:
    """:class:`TLSFiles` from optional settings: None when neither cert nor key is given
    (plaintext); TLSFileError when only one is.

    Example:
        >>> tls_files("s.pem", None)
        Traceback (most recent call last):
        ...
        security.tls.TLSFileError: TLS: a certificate needs its key ... found cert='s.pem', key=None: ...
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise TLSFileError(f"TLS: a certificate needs its key and a key its certificate; found "
                           f"cert={_str(cert)!r}, key={_str(key)!r}: give both (or neither, "
                           "for plaintext)")
    return TLSFiles(Path(cert), Path(key), None if ca is None else Path(ca))


def _str(value: str | Path | None) -> str | None:
    return None if value is None else str(value)


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of PEM file ``path`` holding ``what`` ("certificate", "CA" or "key"),
    checked: it exists, can be read, has the right PEM block and (a key) is not encrypted.

    Example:
        >>> read_pem(Path("/nonexistent/server.pem"), "certificate")
        Traceback (most recent call last):
        ...
        security.tls.TLSFileError: TLS certificate /nonexistent/server.pem does not exist; ...
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TLSFileError(f"TLS {what} {path} does not exist; pass the path of a PEM "
                           "file") from None
    except OSError as exc:
        raise TLSFileError(f"TLS {what} {path} cannot be read ({exc.strerror}); check that "
                           "it is a file this user may read") from None
    if what == "key":
        if b"ENCRYPTED" in data:
            raise TLSFileError(f"TLS key {path} is encrypted; give an unencrypted key file "
                               "readable by this user only (chmod 600)")
        if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
            raise TLSFileError(f"TLS key {path} is not a PEM private key (expected a "
                               "'-----BEGIN PRIVATE KEY-----' block); convert it with "
                               "`openssl pkey -in KEY -out KEY.pem`")
    elif _CERT_BEGIN not in data:
        raise TLSFileError(f"TLS {what} {path} is not a PEM certificate (expected a "
                           f"'{_CERT_BEGIN.decode()}' block); convert it with "
                           "`openssl x509 -in CERT -out CERT.pem`")
    return data


def _need_ca(files: TLSFiles, why: str) -> Path:
    if files.ca is None:
        raise TLSFileError(f"TLS: {why} needs a CA file; found none: set ca (--tls-ca)")
    return files.ca


def server_context(files: TLSFiles, *, client_auth: bool = False) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or newer) presenting ``files.cert``; with
    ``client_auth``, clients must present a certificate ``files.ca`` signed.

    Example:
        >>> ctx = server_context(pki.server_files)  # doctest: +SKIP
    """
    read_pem(files.cert, "certificate")
    read_pem(files.key, "key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(files.cert, files.key)
    except ssl.SSLError as exc:
        raise TLSFileError(f"TLS key {files.key} does not match certificate {files.cert} "
                           f"({exc.reason or exc}); give the key the certificate was issued "
                           "for") from None
    if client_auth:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_ca(ctx, _need_ca(files, "client_auth"))
    return ctx


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    read_pem(ca, "CA")
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise TLSFileError(f"TLS CA {ca} holds no usable certificate ({exc.reason or exc}); "
                           "give the PEM certificate of the CA") from None


def client_context(ca: Path, *, cert: Path | None = None,
                   key: Path | None = None) -> ssl.SSLContext:
    """A client-side context that trusts only ``ca`` and checks the server's host name
    (TLS 1.2 or newer); ``cert`` and ``key`` are presented to servers that ask (mutual TLS).

    Example:
        >>> aiohttp.TCPConnector(ssl=client_context(Path("ca.pem")))  # doctest: +SKIP
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname on
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(ctx, ca)
    pair = tls_files(cert, key)
    if pair is not None:
        read_pem(pair.cert, "certificate")
        read_pem(pair.key, "key")
        try:
            ctx.load_cert_chain(pair.cert, pair.key)
        except ssl.SSLError as exc:
            raise TLSFileError(f"TLS key {pair.key} does not match certificate {pair.cert} "
                               f"({exc.reason or exc})") from None
    return ctx


def grpc_server_credentials(files: TLSFiles, *, client_auth: bool = False
                            ) -> grpc.ServerCredentials:
    """gRPC server credentials presenting ``files.cert`` (``client_auth``: clients must
    present a certificate ``files.ca`` signed).

    Example:
        >>> server.add_secure_port("127.0.0.1:0", grpc_server_credentials(files))  # doctest: +SKIP
    """
    import grpc

    server_context(files, client_auth=client_auth)  # every file checked, the pair matched
    ca = read_pem(files.ca, "CA") if client_auth and files.ca is not None else None
    return grpc.ssl_server_credentials(
        [(read_pem(files.key, "key"), read_pem(files.cert, "certificate"))],
        root_certificates=ca, require_client_auth=client_auth)


def grpc_channel_credentials(ca: Path, *, cert: Path | None = None,
                             key: Path | None = None) -> grpc.ChannelCredentials:
    """gRPC channel credentials trusting only ``ca`` (``cert``/``key``: mutual TLS).

    Example:
        >>> grpc.aio.secure_channel(target, grpc_channel_credentials(ca))  # doctest: +SKIP
    """
    import grpc

    client_context(ca, cert=cert, key=key)  # every file checked, the pair matched
    pair = tls_files(cert, key)
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "CA"),
        private_key=None if pair is None else read_pem(pair.key, "key"),
        certificate_chain=None if pair is None else read_pem(pair.cert, "certificate"))


def cert_and_key_pem(files: TLSFiles) -> bytes:
    """The certificate chain then the key in one PEM (HAProxy's ``crt`` format), checked.

    Example:
        >>> (tmp / "door.pem").write_bytes(cert_and_key_pem(files))  # doctest: +SKIP
    """
    server_context(files)
    cert, key = read_pem(files.cert, "certificate"), read_pem(files.key, "key")
    return cert.rstrip(b"\n") + b"\n" + key
