"""The artifact manifest: what one model version contains, as canonical JSON.

manifest.json lists every file of the artifact directory (except itself and model.sig) with
its sha256 and size, so that a reader can check each file before loading anything.

Example:
    >>> m = build_manifest(  # doctest: +SKIP
    ...     "art/", version="20261129T071500Z-3f2a9c", kind="sequential-recommender",
    ...     io={"inputs": [], "outputs": [], "max_seq_len": 50, "n_items": 1682},
    ...     metrics={"ndcg@10": 0.41},
    ... )
    >>> write_manifest("art/", m)  # doctest: +SKIP
    >>> read_manifest("art/") == m  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from durable import atomic_write_bytes
from export.errors import ArtifactVerificationError, ManifestError

__all__ = [
    "ARTIFACT_FORMAT",
    "KINDS",
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "SIGNING_METHODS",
    "FileEntry",
    "Manifest",
    "build_manifest",
    "check_directory",
    "hash_file",
    "read_manifest",
    "write_manifest",
]

ARTIFACT_FORMAT = "recdrill-artifact/1"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "model.sig"
KINDS = frozenset({"sequential-recommender", "search-encoder"})
SIGNING_METHODS = frozenset({"model-signing/ec-p256", "ed25519"})

_CHUNK_BYTES = 1 << 20
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_FIELDS = ("format", "version", "parent", "created_at", "kind", "io", "metrics", "files", "signing")
_UNLISTED = frozenset({MANIFEST_FILE, SIGNATURE_FILE})


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One file of the artifact: its path relative to the directory, sha256 hex and size."""

    path: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        _check_relative_path(self.path)
        if not isinstance(self.sha256, str) or not _SHA256_RE.fullmatch(self.sha256):
            raise ManifestError(
                f"files[{self.path!r}].sha256: expected 64 lowercase hex characters, "
                f"found {self.sha256!r}; rebuild the manifest with build_manifest"
            )
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ManifestError(
                f"files[{self.path!r}].size: expected a non-negative integer, found "
                f"{self.size!r}; rebuild the manifest with build_manifest"
            )


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The parsed, validated content of manifest.json (treat ``io``/``metrics`` as read-only).

    ``signing`` is ``{"method": ..., "key_id": ...}`` or None before a key is chosen.
    """

    version: str
    kind: str
    io: dict[str, Any]
    metrics: dict[str, float]
    files: tuple[FileEntry, ...]
    created_at: str
    parent: str | None = None
    signing: dict[str, str] | None = None
    format: str = ARTIFACT_FORMAT

    def __post_init__(self) -> None:
        _validate(self)

    def to_json_bytes(self) -> bytes:
        """Canonical manifest.json bytes: sorted keys, indent 2, ASCII, trailing newline."""
        obj = {
            "format": self.format,
            "version": self.version,
            "parent": self.parent,
            "created_at": self.created_at,
            "kind": self.kind,
            "io": self.io,
            "metrics": self.metrics,
            "files": [dataclasses.asdict(entry) for entry in self.files],
            "signing": self.signing,
        }
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)
        return (text + "\n").encode("ascii")

    @classmethod
    def from_json_bytes(cls, data: bytes) -> Manifest:
        """Parse and validate manifest.json bytes; raise ManifestError naming the bad field."""
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"expected UTF-8 JSON, found undecodable data ({exc})") from exc
        if not isinstance(obj, dict):
            raise ManifestError(f"expected a JSON object, found {type(obj).__name__}")
        unknown = sorted(set(obj) - set(_FIELDS))
        missing = sorted(set(_FIELDS) - set(obj))
        if unknown or missing:
            raise ManifestError(
                f"fields: expected exactly {sorted(_FIELDS)}, found unknown "
                f"{unknown} and missing {missing}; was it written by another tool or version?"
            )
        if obj["format"] != ARTIFACT_FORMAT:
            raise ManifestError(
                f"format: expected {ARTIFACT_FORMAT!r}, found {obj['format']!r}; this reader "
                "understands only that format: re-export with this version of recdrill"
            )
        files = obj["files"]
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise ManifestError("files: expected a list of {path, sha256, size}")
        try:
            entries = tuple(FileEntry(f["path"], f["sha256"], f["size"]) for f in files)
        except KeyError as exc:
            raise ManifestError(f"files: an entry lacks the field {exc}") from exc
        return cls(
            version=obj["version"],
            kind=obj["kind"],
            io=obj["io"],
            metrics=obj["metrics"],
            files=entries,
            created_at=obj["created_at"],
            parent=obj["parent"],
            signing=obj["signing"],
            format=obj["format"],
        )


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Return ``(sha256_hex, size)`` of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def build_manifest(
    directory: str | os.PathLike[str],
    *,
    version: str,
    kind: str,
    io: Mapping[str, Any],
    metrics: Mapping[str, float],
    parent: str | None = None,
    created_at: str | None = None,
    signing: Mapping[str, str] | None = None,
) -> Manifest:
    """Hash every file under ``directory`` (except manifest.json, model.sig) into a Manifest.

    ``created_at`` defaults to now, UTC, to the second.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ManifestError(f"{root}: expected a directory holding the artifact files, found none")
    files, links = _walk(root)
    if links:
        # A link could point outside the artifact, where no digest protects it.
        raise ManifestError(
            f"{links[0]}: is a symbolic link; artifacts hold regular files only: "
            "replace it by a copy of its target"
        )
    entries = []
    for rel in files:
        sha256, size = hash_file(root / rel)
        entries.append(FileEntry(rel, sha256, size))
    if created_at is None:
        created_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Manifest(
        version=version,
        kind=kind,
        io=dict(io),
        metrics={name: _as_float(name, value) for name, value in metrics.items()},
        files=tuple(entries),
        created_at=created_at,
        parent=parent,
        signing=None if signing is None else dict(signing),
    )


def write_manifest(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    """Write ``manifest`` as ``directory/manifest.json``, atomically."""
    atomic_write_bytes(Path(directory) / MANIFEST_FILE, manifest.to_json_bytes())


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``directory/manifest.json``; raise ManifestError if absent or invalid."""
    path = Path(directory) / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(
            f"{path} not found: expected an artifact directory written by export; "
            "check the path or re-export"
        ) from exc
    try:
        return Manifest.from_json_bytes(data)
    except ManifestError as exc:
        raise ManifestError(
            f"{path}: {exc}; restore it from the store or re-export the artifact"
        ) from exc


def check_directory(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    """Raise ArtifactVerificationError naming the first file that ``manifest`` does not describe.

    Checks, cheapest first: no symbolic link, every listed file present with the listed size,
    no unlisted file, then every listed sha256.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ArtifactVerificationError(
            ".", "missing", f"{root}: expected an artifact directory, found none; check the path"
        )
    files, links = _walk(root)
    if links:
        raise ArtifactVerificationError(
            links[0],
            "unlisted",
            f"{links[0]}: is a symbolic link (expected regular files only, since a link can "
            "point where no digest protects it); remove it, or re-export the artifact",
        )
    present = set(files)
    for entry in manifest.files:
        if entry.path not in present:
            raise ArtifactVerificationError(
                entry.path,
                "missing",
                f"{entry.path}: listed in manifest.json but not found in {root}; the copy is "
                "incomplete: fetch the artifact again from the store, or re-export it",
            )
        size = (root / entry.path).stat().st_size
        if size != entry.size:
            raise ArtifactVerificationError(
                entry.path,
                "size-mismatch",
                f"{entry.path}: expected {entry.size} bytes (manifest.json), found {size}; the "
                "file is truncated or modified: fetch it again from the store, or re-export",
            )
    listed = {entry.path for entry in manifest.files}
    for rel in files:
        if rel not in listed:
            raise ArtifactVerificationError(
                rel,
                "unlisted",
                f"{rel}: found in {root} but not listed in manifest.json (expected only the "
                "listed files, manifest.json and model.sig); remove it or re-export the artifact",
            )
    for entry in manifest.files:
        sha256, _ = hash_file(root / entry.path)
        if sha256 != entry.sha256:
            raise ArtifactVerificationError(
                entry.path,
                "digest-mismatch",
                f"{entry.path}: expected sha256 {entry.sha256} (manifest.json), found {sha256}; "
                "the file was modified or corrupted: fetch it again from the store, or re-export",
            )


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """Sorted relative POSIX paths under ``root``: (regular files to list, symbolic links)."""
    files, links = [], []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            links.append(rel)
        elif path.is_file() and rel not in _UNLISTED:
            files.append(rel)
    return sorted(files), sorted(links)


def _as_float(name: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]  # numpy scalars and bools included
    except (TypeError, ValueError):
        raise ManifestError(f"metrics[{name!r}]: expected a number, found {value!r}") from None


def _check_relative_path(path: object) -> None:
    pure = PurePosixPath(path) if isinstance(path, str) else None
    if (
        pure is None
        or not path
        or pure.is_absolute()
        or ".." in pure.parts
        or pure.as_posix() != path
        or path in _UNLISTED
    ):
        raise ManifestError(
            f"files: expected a normalised relative POSIX path other than manifest.json and "
            f"model.sig, found {path!r}; rebuild the manifest with build_manifest"
        )


def _validate(m: Manifest) -> None:
    """Check the invariants of recdrill-artifact/1 that the field types alone don't."""
    if m.format != ARTIFACT_FORMAT:
        raise ManifestError(f"format: expected {ARTIFACT_FORMAT!r}, found {m.format!r}")
    if not isinstance(m.version, str) or not m.version:
        raise ManifestError(f"version: expected a non-empty string, found {m.version!r}")
    if m.parent is not None and (not isinstance(m.parent, str) or not m.parent):
        raise ManifestError(f"parent: expected null or a version string, found {m.parent!r}")
    if m.kind not in KINDS:
        raise ManifestError(f"kind: expected one of {sorted(KINDS)}, found {m.kind!r}")
    _validate_created_at(m.created_at)
    _validate_io(m.io)
    if not isinstance(m.metrics, dict):
        raise ManifestError(f"metrics: expected an object of name -> number, found {m.metrics!r}")
    for name, value in m.metrics.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ManifestError(f"metrics[{name!r}]: expected a finite number, found {value!r}")
    if not isinstance(m.files, tuple) or not all(isinstance(f, FileEntry) for f in m.files):
        raise ManifestError("files: expected a tuple of FileEntry")
    paths = [entry.path for entry in m.files]
    if paths != sorted(set(paths)):
        raise ManifestError(
            "files: expected unique paths sorted in ascending order; rebuild with build_manifest"
        )
    if m.signing is not None:
        if not isinstance(m.signing, dict) or set(m.signing) != {"method", "key_id"}:
            raise ManifestError(
                f"signing: expected null or {{'method', 'key_id'}}, found {m.signing!r}"
            )
        if m.signing["method"] not in SIGNING_METHODS:
            raise ManifestError(
                f"signing.method: expected one of {sorted(SIGNING_METHODS)}, "
                f"found {m.signing['method']!r}"
            )
        if not isinstance(m.signing["key_id"], str) or not _KEY_ID_RE.fullmatch(
            m.signing["key_id"]
        ):
            raise ManifestError(
                f"signing.key_id: expected 16 lowercase hex characters (see "
                f"export.signing.key_id_of), found {m.signing['key_id']!r}"
            )


def _validate_created_at(created_at: object) -> None:
    try:
        parsed = datetime.fromisoformat(created_at) if isinstance(created_at, str) else None
    except ValueError:
        parsed = None
    offset = None if parsed is None else parsed.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise ManifestError(
            f"created_at: expected an ISO-8601 UTC timestamp such as '2026-11-29T07:15:00Z', "
            f"found {created_at!r}"
        )


def _validate_io(io: object) -> None:
    if not isinstance(io, dict):
        raise ManifestError(f"io: expected an object, found {io!r}")
    for key in ("inputs", "outputs"):
        specs = io.get(key)
        if not isinstance(specs, list) or not all(
            isinstance(s, dict) and {"name", "dtype", "shape"} <= set(s) for s in specs
        ):
            raise ManifestError(
                f"io.{key}: expected a list of {{name, dtype, shape}}, found {specs!r}"
            )
    try:
        json.dumps(io, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"io: expected plain JSON values, found {exc}") from None
    for key in ("max_seq_len", "n_items"):
        value = io.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ManifestError(f"io.{key}: expected a non-negative integer, found {value!r}")
