"""Verify an artifact directory before anything in it is loaded; fail closed, name the file.

The order of checks makes the culprit unambiguous: manifest.json is trusted only once
model.sig proves it authentic, and data files are then judged against it. So a single changed
byte anywhere is reported against exactly the file that holds it.

The Manifest returned is the authenticated one: pass it on (``VerifiedArtifact``) rather than
reading manifest.json again. A ``VerifiedCache`` lets a long-lived reader (a serving replica
reloading the version it serves) skip re-hashing a directory that has not changed since this
process verified it.

Example:
    >>> manifest = verify_artifact("art/", "keys/signing.pub")  # doctest: +SKIP
    >>> manifest.version  # doctest: +SKIP
    '20261129T071500Z-3f2a9c'
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from export.errors import ArtifactVerificationError, ManifestError, SigningError
from export.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest, check_directory, hash_file
from export.signing import SIGNING_METHOD, key_id_of, read_signed_digests

__all__ = ["VerifiedArtifact", "VerifiedCache", "verify_artifact"]

_RESTORE = "fetch the artifact again from the store, or re-export and re-sign it"


@dataclass(frozen=True)
class VerifiedArtifact:
    """An artifact directory proven authentic, and the manifest that proved it.

    Example:
        >>> art = VerifiedArtifact(path, verify_artifact(path, pub))  # doctest: +SKIP
        >>> art.version, art.manifest.io["max_seq_len"]  # doctest: +SKIP
        ('20261129T071500Z-3f2a9c', 50)
    """

    path: Path
    manifest: Manifest

    @property
    def version(self) -> str:
        return self.manifest.version


def verify_artifact(
    directory: str | os.PathLike[str],
    public_key_path: str | os.PathLike[str],
    *,
    cache: VerifiedCache | None = None,
) -> Manifest:
    """Return the artifact's Manifest once every byte of the directory is proven authentic.

    Raises ArtifactVerificationError (``.path`` names the file, ``.reason`` says why) for any
    defect of the artifact, and SigningError when the public key itself cannot be read. With
    ``cache``, a directory unchanged since ``cache`` last verified it is not hashed again.
    """
    if cache is not None:
        return cache.verify(directory, public_key_path)
    return _verify(Path(directory), public_key_path)


def _verify(root: Path, public_key_path: str | os.PathLike[str]) -> Manifest:
    manifest = _read_manifest(root)
    _check_key(manifest, public_key_path)
    signed = _read_signature(root, public_key_path)
    _check_manifest_signed(root, signed)
    check_directory(root, manifest)
    _check_signature_covers(manifest, signed)
    return manifest


def _read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise ArtifactVerificationError(
            ".", "missing", f"{root}: expected an artifact directory, found none; check the path"
        )
    try:
        return Manifest.from_json_bytes(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactVerificationError(
            MANIFEST_FILE, "missing", f"{MANIFEST_FILE}: not found in {root}; {_RESTORE}"
        ) from None
    except ManifestError as exc:
        raise ArtifactVerificationError(
            MANIFEST_FILE, "malformed", f"{MANIFEST_FILE}: {exc}; {_RESTORE}"
        ) from exc


def _check_key(manifest: Manifest, public_key_path: str | os.PathLike[str]) -> None:
    if manifest.signing is None or manifest.signing["method"] != SIGNING_METHOD:
        found = None if manifest.signing is None else manifest.signing["method"]
        raise ArtifactVerificationError(
            MANIFEST_FILE,
            "unsigned",
            f"{MANIFEST_FILE}: expected signing method {SIGNING_METHOD!r}, found {found!r}; "
            "sign the artifact with export.signing.sign_artifact",
        )
    expected = manifest.signing["key_id"]
    found_id = key_id_of(public_key_path)
    if found_id != expected:
        raise ArtifactVerificationError(
            MANIFEST_FILE,
            "key-mismatch",
            f"{MANIFEST_FILE}: the artifact says it was signed by key id {expected}, but the "
            f"public key {public_key_path} has key id {found_id}; verify with the public key "
            f"whose id is {expected}, or re-sign the artifact with the key {found_id}",
        )


def _read_signature(root: Path, public_key_path: str | os.PathLike[str]) -> dict[str, str]:
    if not (root / SIGNATURE_FILE).is_file():
        raise ArtifactVerificationError(
            SIGNATURE_FILE,
            "missing",
            f"{SIGNATURE_FILE}: not found in {root}, so nothing proves the artifact authentic; "
            f"{_RESTORE}",
        )
    try:
        return read_signed_digests(root, public_key_path)
    except SigningError as exc:
        raise ArtifactVerificationError(
            SIGNATURE_FILE,
            "bad-signature",
            f"{SIGNATURE_FILE}: expected a valid signature by key {key_id_of(public_key_path)}, "
            f"found a corrupt or foreign one ({exc}); {_RESTORE}",
        ) from exc


def _check_manifest_signed(root: Path, signed: dict[str, str]) -> None:
    expected = signed.get(MANIFEST_FILE)
    found, _ = hash_file(root / MANIFEST_FILE)
    if expected is None:
        raise ArtifactVerificationError(
            SIGNATURE_FILE,
            "bad-signature",
            f"{SIGNATURE_FILE}: expected it to cover {MANIFEST_FILE}, found it does not; "
            "re-sign the artifact with export.signing.sign_artifact",
        )
    if found != expected:
        raise ArtifactVerificationError(
            MANIFEST_FILE,
            "not-signed",
            f"{MANIFEST_FILE}: expected sha256 {expected} (signed in {SIGNATURE_FILE}), found "
            f"{found}; the manifest was modified after signing: {_RESTORE}",
        )


def _check_signature_covers(manifest: Manifest, signed: dict[str, str]) -> None:
    """The directory matches the authentic manifest; the signature must say the same."""
    listed = {entry.path: entry.sha256 for entry in manifest.files}
    listed[MANIFEST_FILE] = signed[MANIFEST_FILE]
    for path in sorted(set(listed) | set(signed)):
        if listed.get(path) != signed.get(path):
            raise ArtifactVerificationError(
                path,
                "not-signed",
                f"{path}: expected sha256 {signed.get(path)} (signed in {SIGNATURE_FILE}), found "
                f"{listed.get(path)} (manifest.json and the file agree); the artifact was signed "
                "in an inconsistent state: re-export and re-sign it",
            )


# -- skipping the re-hash of an unchanged directory -----------------------------------------

# Per file: relative path, device, inode, size, mtime and ctime (ns). Writing, truncating,
# replacing or renaming a file changes its ctime or inode, and no process can set a ctime back.
_FileStamp = tuple[str, int, int, int, int, int]


@dataclass(frozen=True)
class _Snapshot:
    files: tuple[_FileStamp, ...]
    newest_change_ns: int


@dataclass(frozen=True)
class _Verified:
    key_id: str
    snapshot: _Snapshot
    manifest: Manifest

    def holds_for(self, key_id: str, snapshot: _Snapshot | None) -> bool:
        """Same key, and the directory exactly as it was when verified."""
        return (self.key_id, self.snapshot) == (key_id, snapshot)


def _snapshot(root: Path) -> _Snapshot | None:
    """Metadata of every entry under ``root`` (no content read); None if it cannot be read."""
    try:
        stats = sorted((p.relative_to(root).as_posix(), p.lstat()) for p in root.rglob("*"))
    except OSError:
        return None
    files = tuple((rel, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                  for rel, st in stats)
    return _Snapshot(files, max((max(f[4], f[5]) for f in files), default=0))


class VerifiedCache:
    """Directories this process verified, so that verifying an unchanged one again is a
    ``stat`` of each file instead of a sha256 of every byte and a signature check.

    A directory counts as unchanged while every entry keeps its inode, size, mtime and ctime
    and none is added or removed; any write through the file system changes one of them (a
    ctime cannot be set back), so a changed or swapped file is still verified in full and
    refused. Not caught: bytes that change under the file system (media corruption); a full
    verification (a new process, replication's ``verify_versions`` scrub) still does. A file changed less than ``racy_s`` before a verification is not
    trusted (timestamps are coarse, as in git's "racy clean" rule): that directory is verified
    in full again next time. Each process starts empty, so a new replica hashes everything.

    Example:
        >>> cache = VerifiedCache()
        >>> verify_artifact("art/", "keys/signing.pub", cache=cache)  # doctest: +SKIP
        >>> verify_artifact("art/", "keys/signing.pub", cache=cache)  # doctest: +SKIP
    """

    def __init__(self, *, racy_s: float = 2.0, max_entries: int = 64,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._racy_ns = int(racy_s * 1e9)
        self._max_entries = max_entries
        self._clock_ns = clock_ns
        self._entries: OrderedDict[Path, _Verified] = OrderedDict()
        self._lock = threading.Lock()

    def verify(
        self, directory: str | os.PathLike[str], public_key_path: str | os.PathLike[str]
    ) -> Manifest:
        """``verify_artifact(directory, public_key_path)``, skipped if nothing changed since."""
        root = Path(directory).absolute()
        key_id = key_id_of(public_key_path)
        started_ns = self._clock_ns()
        before = _snapshot(root)
        with self._lock:
            known = self._entries.pop(root, None)
        if known is not None and known.holds_for(key_id, before):
            self._remember(root, known)
            return known.manifest
        manifest = _verify(root, public_key_path)
        if (before is not None and before.newest_change_ns < started_ns - self._racy_ns
                and _snapshot(root) == before):
            self._remember(root, _Verified(key_id, before, manifest))
        return manifest

    def _remember(self, root: Path, verified: _Verified) -> None:
        with self._lock:
            self._entries[root] = verified
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
