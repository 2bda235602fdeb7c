"""Amend a signed artifact: replace some of its files, say why, re-sign it, swap it in whole.

Forgetting a user rewrites an artifact's ``histories.npz`` without them; the version keeps its
name, so the change is recorded inside the artifact, in ``amendments.json`` (listed in the
manifest, hence signed)::

    {"format": "recdrill-amendments/1",
     "amendments": [{"ticket": "<forget ticket>", "at": "<UTC>", "reason": "forget",
                     "files": {"histories.npz": {"rows_removed": 1, "sha256_before": "..."}}}]}

It names the ticket and never the user. The amended copy is built beside the artifact (unchanged
files hard-linked), manifest rebuilt, signed and verified there, then exchanged with the
original in one ``renameat2(RENAME_EXCHANGE)``: a reader sees the old artifact or the new one,
never a mix. Where the file system cannot exchange, two renames are used; a crash between them
leaves the original at ``.<name>.amend-*.old`` and the amended copy at ``.<name>.amend-*``
beside it (rename the amended copy back to ``<name>``).

Example:
    >>> amend_artifact(Path("art/v1"), {"histories.npz": scrubbed},  # doctest: +SKIP
    ...                Amendment("3f2a...", "forget", {"histories.npz": 1}), priv, pub)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from durable import atomic_write_bytes, atomic_write_text, fsync_dir
from export.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Manifest,
    build_manifest,
    hash_file,
    write_manifest,
)
from export.signing import sign_artifact
from export.verify import verify_artifact

__all__ = ["AMENDMENTS_FILE", "FORMAT", "Amendment", "amend_artifact", "read_amendments"]

AMENDMENTS_FILE = "amendments.json"
FORMAT = "recdrill-amendments/1"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True)
class Amendment:
    """Why files of an artifact change: the ticket, the reason, rows removed per file."""

    ticket: str
    reason: str
    rows_removed: Mapping[str, int]
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def read_amendments(directory: Path) -> list[dict[str, Any]]:
    """The amendments recorded in an artifact, oldest first (none: ``[]``)."""
    path = directory / AMENDMENTS_FILE
    if not path.exists():
        return []
    body = json.loads(path.read_text())
    if body.get("format") != FORMAT:
        raise ValueError(f"{path}: expected format {FORMAT!r}, found {body.get('format')!r}")
    return list(body["amendments"])


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a copy is as good
        shutil.copy2(src, dst)


def _stage(directory: Path, replaced: Mapping[str, bytes]) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.amend-", dir=directory.parent))
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_file() and rel not in replaced and rel not in (MANIFEST_FILE, SIGNATURE_FILE):
            _link_or_copy(path, staging / rel)
    for rel, data in replaced.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(staging / rel, data)  # a new inode: the original stays intact
    return staging


def _record(staging: Path, directory: Path, amendment: Amendment) -> None:
    before = {rel: hash_file(directory / rel)[0] for rel in amendment.rows_removed}
    entry = {"ticket": amendment.ticket, "at": amendment.at, "reason": amendment.reason,
             "files": {rel: {"rows_removed": n, "sha256_before": before[rel]}
                       for rel, n in sorted(amendment.rows_removed.items())}}
    body = {"format": FORMAT, "amendments": [*read_amendments(directory), entry]}
    atomic_write_text(staging / AMENDMENTS_FILE, json.dumps(body, indent=2, sort_keys=True)
                      + "\n")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2``); False where unsupported."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    return bool(renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                          _RENAME_EXCHANGE) == 0)


def _swap_in(staging: Path, directory: Path) -> None:
    if not _exchange(staging, directory):
        aside = staging.with_name(staging.name + ".old")
        os.rename(directory, aside)
        os.rename(staging, directory)
        staging = aside
    fsync_dir(directory.parent)
    shutil.rmtree(staging)  # now the old artifact


def amend_artifact(directory: Path, replaced: Mapping[str, bytes], amendment: Amendment,
                   private_key: Path, public_key: Path) -> Manifest:
    """Replace ``replaced`` (path in the artifact → new bytes), record ``amendment``, re-sign
    with ``private_key`` and verify with ``public_key``; returns the new manifest.

    The artifact must verify first (an artifact that does not is not amended: restore it);
    ExportError or ArtifactVerificationError from export name what failed, and the original
    stays as it was.
    """
    old = verify_artifact(directory, public_key)
    staging = _stage(directory, replaced)
    try:
        _record(staging, directory, amendment)
        manifest = build_manifest(
            staging, version=old.version, kind=old.kind, io=old.io, metrics=old.metrics,
            parent=old.parent, created_at=old.created_at, signing=old.signing,
            pseudonym_key_id=old.pseudonym_key_id)
        write_manifest(staging, manifest)
        sign_artifact(staging, private_key)
        verify_artifact(staging, public_key)
        _swap_in(staging, directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return manifest
