"""Verify an artifact directory before anything in it is loaded; fail closed, name the file.

The order of checks makes the culprit unambiguous: manifest.json is trusted only once
model.sig proves it authentic, and data files are then judged against it. So a single changed
byte anywhere is reported against exactly the file that holds it.

Example:
    >>> manifest = verify_artifact("art/", "keys/signing.pub")  # doctest: +SKIP
    >>> manifest.version  # doctest: +SKIP
    '20261129T071500Z-3f2a9c'
"""

from __future__ import annotations

import os
from pathlib import Path

from export.errors import ArtifactVerificationError, ManifestError, SigningError
from export.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest, check_directory, hash_file
from export.signing import SIGNING_METHOD, key_id_of, read_signed_digests

__all__ = ["verify_artifact"]

_RESTORE = "fetch the artifact again from the store, or re-export and re-sign it"


def verify_artifact(
    directory: str | os.PathLike[str], public_key_path: str | os.PathLike[str]
) -> Manifest:
    """Return the artifact's Manifest once every byte of the directory is proven authentic.

    Raises ArtifactVerificationError (``.path`` names the file, ``.reason`` says why) for any
    defect of the artifact, and SigningError when the public key itself cannot be read.
    """
    root = Path(directory)
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
