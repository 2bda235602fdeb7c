"""Where signing keys live by default: outside the repo, overridable by environment.

``RECDRILL_SIGNING_KEY`` / ``RECDRILL_PUBLIC_KEY`` name the PEM files; otherwise
``~/.config/recdrill/keys/signing.key`` and ``signing.pub``. The private key is only needed
where publishing happens; readers need the public key alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from export.signing import generate_signing_key
from security.paths import key_dir

PRIVATE_ENV = "RECDRILL_SIGNING_KEY"
PUBLIC_ENV = "RECDRILL_PUBLIC_KEY"


def default_key_dir() -> Path:
    """``$RECDRILL_KEY_DIR`` or ``~/.config/recdrill/keys`` (``security.paths.key_dir``)."""
    return key_dir()


def private_key_path() -> Path:
    """The signing (private) key path."""
    return Path(os.environ.get(PRIVATE_ENV, default_key_dir() / "signing.key"))


def public_key_path() -> Path:
    """The verification (public) key path."""
    return Path(os.environ.get(PUBLIC_ENV, default_key_dir() / "signing.pub"))


def ensure_signing_key() -> tuple[Path, Path]:
    """Return (private, public) key paths, generating a pair on first use."""
    private, public = private_key_path(), public_key_path()
    if not private.exists():
        generate_signing_key(private, public)
    return private, public
