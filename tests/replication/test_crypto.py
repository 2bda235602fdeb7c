from __future__ import annotations

import hashlib
import os

import pytest

from replication.crypto import decrypt_chunks, encrypt_chunks, envelope_key_id, is_encrypted
from replication.errors import IntegrityError, KeyMissingError
from replication.keys import Keyring

RING = Keyring.from_keys([b"\x07" * 32])


def _seal(data: bytes, chunk: int = 16) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    return b"".join(encrypt_chunks([data[:5], data[5:]], RING, digest=digest, chunk_bytes=chunk))


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 32, 100])
def test_round_trip_any_size(size: int) -> None:
    data = os.urandom(size)
    sealed = _seal(data)
    digest = hashlib.sha256(data).hexdigest()
    for read in (7, 64, len(sealed) + 1):  # small reads, and one read holding every segment
        pieces = [sealed[i : i + read] for i in range(0, len(sealed), read)]
        assert b"".join(decrypt_chunks(pieces, RING, digest=digest)) == data
    assert is_encrypted(sealed) and envelope_key_id(sealed) == RING.active_id


def test_flipped_byte_is_rejected() -> None:
    data = os.urandom(50)
    sealed = bytearray(_seal(data))
    sealed[-20] ^= 1
    with pytest.raises(IntegrityError, match="authentication failed"):
        b"".join(decrypt_chunks([bytes(sealed)], RING, digest=hashlib.sha256(data).hexdigest()))


def test_dropping_the_last_segment_is_rejected() -> None:
    data = os.urandom(48)  # three full 16-byte chunks
    sealed = _seal(data)
    truncated = sealed[: len(sealed) - (16 + 16)]
    with pytest.raises(IntegrityError):
        b"".join(decrypt_chunks([truncated], RING, digest=hashlib.sha256(data).hexdigest()))


def test_ciphertext_is_bound_to_its_address() -> None:
    data = b"payload"
    with pytest.raises(IntegrityError):
        b"".join(decrypt_chunks([_seal(data)], RING, digest="00" * 32))


def test_unknown_key_id_names_the_key() -> None:
    data = b"payload"
    other = Keyring.from_keys([b"\x08" * 32])
    with pytest.raises(KeyMissingError, match=RING.active_id or ""):
        b"".join(decrypt_chunks([_seal(data)], other, digest=hashlib.sha256(data).hexdigest()))
