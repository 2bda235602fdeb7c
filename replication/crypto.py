"""Blob encryption at rest: AES-256-GCM over fixed-size chunks (a STREAM-style envelope).

Layout of an encrypted blob::

    MAGIC (8) | key id (16, ascii hex) | chunk size (u32) | nonce prefix (8) | segments...
    segment i = AES-256-GCM(key, nonce = prefix || u32(i),
                            aad = header || digest || u32(i) || final flag, chunk i) (+16-byte tag)

Chunking keeps memory flat for large artifacts; the final flag in the AAD detects truncation
and the plaintext digest in the AAD binds a ciphertext to its content address, so a blob moved
to another address fails to decrypt. A blob not starting with MAGIC is stored in clear.

Example:
    >>> from replication.keys import Keyring
    >>> ring = Keyring.from_keys([b"k" * 32])
    >>> sealed = b"".join(encrypt_chunks([b"hello"], ring, digest="ab" * 32))
    >>> b"".join(decrypt_chunks([sealed], ring, digest="ab" * 32))
    b'hello'
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterable, Iterator

from replication.errors import IntegrityError
from replication.keys import Keyring

__all__ = ["MAGIC", "decrypt_chunks", "encrypt_chunks", "envelope_key_id", "is_encrypted"]

MAGIC = b"RDENC1\x00\x00"
_HEADER = struct.Struct(">8s16sI8s")
_TAG = 16
DEFAULT_CHUNK = 1024 * 1024


def is_encrypted(prefix: bytes) -> bool:
    """True when ``prefix`` (the first bytes of a stored blob) starts an encrypted envelope."""
    return prefix.startswith(MAGIC)


def envelope_key_id(prefix: bytes) -> str | None:
    """The key id recorded in an envelope header, or None for a clear blob."""
    if not is_encrypted(prefix) or len(prefix) < _HEADER.size:
        return None
    return _HEADER.unpack_from(prefix)[1].decode("ascii")


def _aad(header: bytes, digest: str, index: int, final: bool) -> bytes:
    return header + digest.encode("ascii") + struct.pack(">IB", index, 1 if final else 0)


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """Yield (piece, is_last) with every piece but the last exactly ``size`` bytes."""
    buf = bytearray()
    pending: bytes | None = None
    for chunk in chunks:
        buf += chunk
        while len(buf) > size:
            if pending is not None:
                yield pending, False
            pending = bytes(buf[:size])
            del buf[:size]
    if pending is not None:
        if buf:
            yield pending, False
            yield bytes(buf), True
        else:
            yield pending, True
    else:
        yield bytes(buf), True


def encrypt_chunks(
    plain: Iterable[bytes], keyring: Keyring, *, digest: str, chunk_bytes: int = DEFAULT_CHUNK
) -> Iterator[bytes]:
    """Encrypt a plaintext stream with the keyring's active key; yields the envelope."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key_id, key = keyring.active()
    aead = AESGCM(key)
    prefix = os.urandom(8)
    header = _HEADER.pack(MAGIC, key_id.encode("ascii"), chunk_bytes, prefix)
    yield header
    for index, (piece, final) in enumerate(_rechunk(plain, chunk_bytes)):
        nonce = prefix + struct.pack(">I", index)
        yield aead.encrypt(nonce, piece, _aad(header, digest, index, final))


def decrypt_chunks(sealed: Iterable[bytes], keyring: Keyring, *, digest: str) -> Iterator[bytes]:
    """Decrypt an envelope stream; raises IntegrityError on any tampering or truncation."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    stream = iter(sealed)
    buf = bytearray()
    for chunk in stream:
        buf += chunk
        if len(buf) >= _HEADER.size:
            break
    if len(buf) < _HEADER.size or not is_encrypted(bytes(buf)):
        raise IntegrityError(
            "not an encrypted envelope (header missing or truncated)", digest=digest
        )
    header = bytes(buf[: _HEADER.size])
    _, raw_key_id, chunk_bytes, prefix = _HEADER.unpack(header)
    key_id = raw_key_id.decode("ascii", "replace")
    aead = AESGCM(keyring.get(key_id))
    del buf[: _HEADER.size]
    segment = chunk_bytes + _TAG
    index = 0

    def _open(piece: bytes, final: bool) -> bytes:
        nonce = prefix + struct.pack(">I", index)
        try:
            return aead.decrypt(nonce, piece, _aad(header, digest, index, final))
        except InvalidTag as exc:
            raise IntegrityError(
                f"AES-GCM authentication failed on chunk {index} (tampered, truncated or "
                f"encrypted for another address); key id {key_id}",
                digest=digest,
            ) from exc

    # The first read may already hold several segments: drain it before reading more.
    for chunk in itertools.chain([b""], stream):
        buf += chunk
        while len(buf) > segment:
            yield _open(bytes(buf[:segment]), False)
            del buf[:segment]
            index += 1
    yield _open(bytes(buf), True)
