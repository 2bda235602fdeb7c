"""Where security material lives by default: outside the repository, overridable by environment.

Secrets (keys, the token table) live in the key directory, ``$RECDRILL_KEY_DIR`` or
``~/.config/recdrill/keys``; state that is not secret but must outlive a run (the audit chain,
the register of forget requests) in ``$RECDRILL_STATE_DIR`` or ``~/.local/state/recdrill``.
Each path also has its own variable, so a deployment can point any of them elsewhere.

Example:
    >>> tokens_path().parent == key_dir() or "RECDRILL_TOKENS" in os.environ
    True
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["audit_key_path", "audit_log_path", "data_key_path", "forget_register_path",
           "key_dir", "pseudonym_key_path", "state_dir", "tokens_path"]


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else default


def key_dir() -> Path:
    """``$RECDRILL_KEY_DIR`` or ``~/.config/recdrill/keys`` (signing, store, data, HMAC keys)."""
    return _env_path("RECDRILL_KEY_DIR", Path.home() / ".config" / "recdrill" / "keys")


def state_dir() -> Path:
    """``$RECDRILL_STATE_DIR`` or ``~/.local/state/recdrill`` (audit chain, forget register)."""
    return _env_path("RECDRILL_STATE_DIR", Path.home() / ".local" / "state" / "recdrill")


def audit_log_path() -> Path:
    """The one audit chain: ``$RECDRILL_AUDIT_LOG`` or ``<state dir>/audit.jsonl``."""
    return _env_path("RECDRILL_AUDIT_LOG", state_dir() / "audit.jsonl")


def audit_key_path() -> Path:
    """The audit head's HMAC key: ``$RECDRILL_AUDIT_KEY`` or ``<key dir>/audit.key``."""
    return _env_path("RECDRILL_AUDIT_KEY", key_dir() / "audit.key")


def tokens_path() -> Path:
    """The token table (hashes only): ``$RECDRILL_TOKENS`` or ``<key dir>/tokens.json``."""
    return _env_path("RECDRILL_TOKENS", key_dir() / "tokens.json")


def pseudonym_key_path() -> Path:
    """The user-id HMAC key: ``$RECDRILL_PSEUDONYM_KEY`` or ``<key dir>/pseudonym.key``."""
    return _env_path("RECDRILL_PSEUDONYM_KEY", key_dir() / "pseudonym.key")


def data_key_path() -> Path:
    """The raw-data AES-256-GCM key: ``$RECDRILL_DATA_KEY`` or ``<key dir>/data.key``."""
    return _env_path("RECDRILL_DATA_KEY", key_dir() / "data.key")


def forget_register_path() -> Path:
    """Forget requests: ``$RECDRILL_FORGET_REGISTER`` or ``<state dir>/forget.jsonl``."""
    return _env_path("RECDRILL_FORGET_REGISTER", state_dir() / "forget.jsonl")
