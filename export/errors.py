"""Errors raised by export/.

Hierarchy::

    ExportError                     root: catch this to handle any export failure
    ├── ManifestError               manifest.json missing, unparsable or invalid
    ├── SigningError                a key cannot be read or written, or signing is refused
    ├── ArtifactVerificationError   an artifact directory failed verification (.path, .reason)
    ├── ParityError                 the ONNX graph disagrees with the PyTorch model
    └── QuantizationRejected        the int8 graph lost too much quality and was dropped

Example:
    >>> from export.errors import ArtifactVerificationError
    >>> err = ArtifactVerificationError("model.onnx", "digest-mismatch", "model.onnx: ...")
    >>> (err.path, err.reason)
    ('model.onnx', 'digest-mismatch')
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ArtifactVerificationError",
    "ExportError",
    "ManifestError",
    "ParityError",
    "QuantizationRejected",
    "SigningError",
    "VerificationReason",
]

VerificationReason = Literal[
    "missing",  # a listed file, manifest.json or model.sig is absent
    "unlisted",  # a file is present that manifest.json does not list
    "size-mismatch",  # a listed file has another size than manifest.json says
    "digest-mismatch",  # a listed file has another sha256 than manifest.json says
    "malformed",  # manifest.json cannot be parsed or breaks the format
    "unsigned",  # manifest.json has no usable signing block
    "key-mismatch",  # manifest.json names another key than the one given to verify
    "bad-signature",  # model.sig is corrupt or was not made by the expected key
    "not-signed",  # a file differs from what model.sig covers
]


class ExportError(Exception):
    """Root of every error raised by export/."""


class ManifestError(ExportError):
    """manifest.json is missing, unparsable, or violates the recdrill-artifact/1 format."""


class SigningError(ExportError):
    """A signing key cannot be generated or read, or an artifact cannot be signed."""


class ArtifactVerificationError(ExportError):
    """An artifact failed verification; nothing from it may be loaded.

    Attributes:
        path: the offending file, relative to the artifact directory ("." for the directory).
        reason: a short stable code (see ``VerificationReason``) for metrics and audit logs.
    """

    def __init__(self, path: str, reason: VerificationReason, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class ParityError(ExportError):
    """The exported ONNX graph's outputs differ from the PyTorch model's beyond tolerance."""


class QuantizationRejected(ExportError):
    """The int8 graph's top-10 overlap with fp32 fell below the threshold, so it is not shipped."""
