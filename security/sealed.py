"""Files sealed at rest with AES-256-GCM, opened only in memory.

Layout of a sealed file::

    MAGIC (8) | key id (16, ascii hex) | nonce (12) | AES-256-GCM(key, nonce, aad=header, data)

The header (magic, key id, nonce) is the associated data, so changing any byte of the file —
header or body — or cutting it short makes opening fail. Raw interaction files are small
enough (hundreds of MB at most) to seal in one piece; large artifacts use replication's
chunked envelope instead.

Example:
    >>> key = b"k" * 32
    >>> blob = seal(b"user,item", key)
    >>> is_sealed(blob), unseal(blob, key)
    (True, b'user,item')
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from durable import atomic_write_bytes
from security.errors import SealedDataError
from security.keyfiles import key_id_of

__all__ = ["MAGIC", "SUFFIX", "is_sealed", "read_maybe_sealed", "seal", "sealed_key_id",
           "unseal", "write_sealed"]

MAGIC = b"RDSEAL1\x00"
SUFFIX = ".sealed"
_NONCE = 12
_HEADER = len(MAGIC) + 16 + _NONCE


def _key_id(key: bytes) -> str:
    return key_id_of(key, "data")


def is_sealed(prefix: bytes) -> bool:
    """True when ``prefix`` (a file's first bytes) starts a sealed file."""
    return prefix.startswith(MAGIC)


def sealed_key_id(prefix: bytes) -> str | None:
    """The id of the key a sealed file needs (None: not sealed)."""
    return prefix[len(MAGIC):len(MAGIC) + 16].decode("ascii", "replace") if is_sealed(prefix) \
        else None


def seal(data: bytes, key: bytes) -> bytes:
    """``data`` encrypted and authenticated under ``key`` (32 bytes)."""
    header = MAGIC + _key_id(key).encode() + os.urandom(_NONCE)
    return header + AESGCM(key).encrypt(header[-_NONCE:], data, header)


def unseal(blob: bytes, key: bytes, *, source: str = "sealed data") -> bytes:
    """The plaintext of ``blob``; SealedDataError when the key is wrong or a byte changed."""
    if not is_sealed(blob):
        raise SealedDataError(f"{source}: not sealed (no {MAGIC!r} header)")
    if len(blob) < _HEADER + 16:
        raise SealedDataError(f"{source}: truncated ({len(blob)} bytes)")
    header, body = blob[:_HEADER], blob[_HEADER:]
    want = header[len(MAGIC):len(MAGIC) + 16].decode("ascii", "replace")
    if want != _key_id(key):
        raise SealedDataError(f"{source}: sealed with key {want}, the key given is "
                              f"{_key_id(key)}; point RECDRILL_DATA_KEY at the right key")
    try:
        return AESGCM(key).decrypt(header[-_NONCE:], body, header)
    except InvalidTag:
        raise SealedDataError(f"{source}: authentication failed: the file was changed or cut "
                              "after it was sealed") from None


def write_sealed(path: str | os.PathLike[str], data: bytes, key: bytes) -> None:
    """Seal ``data`` into ``path`` atomically (temp file, fsync, rename)."""
    atomic_write_bytes(path, seal(data, key))


def read_maybe_sealed(path: str | os.PathLike[str], key: bytes | None) -> bytes:
    """``path``'s bytes, opened in memory when sealed; a sealed file without a key is an error
    naming the file."""
    p = Path(path)
    blob = p.read_bytes()
    if not is_sealed(blob):
        return blob
    if key is None:
        raise SealedDataError(f"{p}: sealed (key {sealed_key_id(blob)}) and no data key given: "
                              "set RECDRILL_DATA_KEY or create the default one")
    return unseal(blob, key, source=str(p))
