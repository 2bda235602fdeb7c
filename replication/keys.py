"""Encryption keys for blobs at rest: a keyring loaded from key files or an environment variable.

A key file holds one base64-encoded 32-byte AES-256 key (``generate_key_file`` writes one,
mode 0600). ``RECDRILL_STORE_KEYS`` may hold comma-separated base64 keys instead. The first
key is the active one (new blobs); the others only decrypt, which is what a rotation needs:
load ``[new, old]``, run ``rotate-key``, then drop the old key. Keys never live in the repo.

Example:
    >>> ring = Keyring.from_keys([b"\\x01" * 32])
    >>> ring.active()[0] == key_id_of(b"\\x01" * 32)
    True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from replication.errors import ConfigError, KeyMissingError

__all__ = ["ENV_KEYS", "KeySpec", "Keyring", "generate_key_file", "key_id_of"]

ENV_KEYS = "RECDRILL_STORE_KEYS"
KEY_BYTES = 32


def key_id_of(key: bytes) -> str:
    """Public id of a key: first 16 hex of sha256 over a domain tag and the key."""
    return hashlib.sha256(b"recdrill-store-key/1\x00" + key).hexdigest()[:16]


def _decode(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(
            f"{source}: expected a base64 32-byte key, found undecodable text"
        ) from exc
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{source}: expected a {KEY_BYTES}-byte AES-256 key, found {len(key)} bytes; "
            "create one with `python -m replication keygen PATH`"
        )
    return key


@dataclass(frozen=True)
class Keyring:
    """Keys by id; ``active_id`` encrypts, every key decrypts. Empty means no encryption."""

    keys: Mapping[str, bytes] = field(default_factory=dict)
    active_id: str | None = None

    @classmethod
    def from_keys(cls, keys: Sequence[bytes]) -> Keyring:
        """A keyring whose first key is active."""
        ids = [key_id_of(k) for k in keys]
        return cls(dict(zip(ids, keys, strict=True)), ids[0] if ids else None)

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike[str]]) -> Keyring:
        """Load base64 keys from files; the first file's key is active."""
        keys = []
        for path in paths:
            try:
                text = Path(path).read_text(encoding="ascii")
            except OSError as exc:
                raise ConfigError(f"cannot read key file {path}: {exc}") from exc
            keys.append(_decode(text, f"key file {path}"))
        return cls.from_keys(keys)

    @classmethod
    def from_env(cls, var: str = ENV_KEYS) -> Keyring:
        """Load comma-separated base64 keys from ``var`` (empty keyring when unset)."""
        raw = os.environ.get(var, "")
        return cls.from_keys([_decode(p, f"${var}") for p in raw.split(",") if p.strip()])

    @property
    def encrypting(self) -> bool:
        """True when new blobs get encrypted."""
        return self.active_id is not None

    def active(self) -> tuple[str, bytes]:
        """The (key id, key) used for new blobs."""
        if self.active_id is None:
            raise KeyMissingError("no active encryption key: pass --store-key or set $" + ENV_KEYS)
        return self.active_id, self.keys[self.active_id]

    def get(self, key_id: str) -> bytes:
        """The key with ``key_id``, for decryption."""
        try:
            return self.keys[key_id]
        except KeyError as exc:
            raise KeyMissingError(
                f"blob is encrypted with key id {key_id}, but the keyring holds "
                f"{sorted(self.keys) or 'no keys'}; pass that key with --store-key"
            ) from exc


@dataclass(frozen=True)
class KeySpec:
    """Where a process finds its keys: key file paths and/or an env var (sent to Ray actors).

    Only paths and names travel, never key bytes: each node reads its own copy.
    """

    files: tuple[str, ...] = ()
    env_var: str | None = ENV_KEYS

    def load(self) -> Keyring:
        """Files first (first file active), then the env var's keys."""
        ring = Keyring.from_files(self.files)
        if self.env_var is None:
            return ring
        extra = Keyring.from_env(self.env_var)
        keys = dict(ring.keys)
        for key_id, key in extra.keys.items():
            keys.setdefault(key_id, key)
        return Keyring(keys, ring.active_id or extra.active_id)


def generate_key_file(path: str | os.PathLike[str]) -> str:
    """Write a fresh random AES-256 key (base64, mode 0600) to ``path``; returns its key id."""
    key = os.urandom(KEY_BYTES)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.b64encode(key).decode("ascii") + "\n")
    return key_id_of(key)
