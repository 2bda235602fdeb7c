"""Export stage: turn a trained model into a signed, verifiable artifact directory.

This package's import surface is torch-free so that replication/ and serving/ can verify and
read artifacts; the torch-using exporters live in their own modules, imported explicitly.

Example:
    >>> from export import verify_artifact
    >>> manifest = verify_artifact("art/", "keys/signing.pub")  # doctest: +SKIP
"""

from __future__ import annotations

from export.errors import (
    ArtifactVerificationError,
    ExportError,
    ManifestError,
    ParityError,
    QuantizationRejected,
    SigningError,
)
from export.manifest import (
    ARTIFACT_FORMAT,
    MANIFEST_FILE,
    FileEntry,
    Manifest,
    build_manifest,
    hash_file,
    read_manifest,
    write_manifest,
)
from export.signing import (
    SIGNATURE_FILE,
    SIGNING_METHOD,
    generate_signing_key,
    key_id_of,
    sign_artifact,
)
from export.verify import verify_artifact

__all__ = [
    "ARTIFACT_FORMAT",
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "SIGNING_METHOD",
    "ArtifactVerificationError",
    "ExportError",
    "FileEntry",
    "Manifest",
    "ManifestError",
    "ParityError",
    "QuantizationRejected",
    "SigningError",
    "build_manifest",
    "generate_signing_key",
    "hash_file",
    "key_id_of",
    "read_manifest",
    "sign_artifact",
    "verify_artifact",
    "write_manifest",
]
