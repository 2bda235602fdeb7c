"""Test and benchmark helpers shipped with the package: small signed artifact directories
shaped like the export contract (random bytes) and signing keys.

Example:
    >>> keys = make_keys(Path("/tmp/k"))  # doctest: +SKIP
    >>> make_artifact(Path("/tmp/arts"), "v1", keys)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from export.manifest import build_manifest, write_manifest
from export.signing import SIGNING_METHOD, generate_signing_key, sign_artifact

__all__ = ["IO", "SigningKeys", "make_artifact", "make_keys"]

IO = {
    "inputs": [{"name": "item_seq", "dtype": "int64", "shape": ["batch", "seq"]}],
    "outputs": [{"name": "scores", "dtype": "float32", "shape": ["batch", "n_items"]}],
    "max_seq_len": 50,
    "n_items": 100,
}


@dataclass(frozen=True)
class SigningKeys:
    """A signing key pair on disk and its key id."""

    private: Path
    public: Path
    key_id: str


def make_keys(directory: Path) -> SigningKeys:
    """A fresh EC P-256 signing key pair under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "signing.pem", directory / "signing.pub"
    key_id = generate_signing_key(private, public)
    return SigningKeys(private, public, key_id)


def make_artifact(
    root: Path,
    version: str,
    keys: SigningKeys,
    *,
    model_bytes: int = 4096,
    parent: str | None = None,
) -> Path:
    """A signed artifact directory ``root/version`` with random model/items/fallback files."""
    art = root / version
    art.mkdir(parents=True)
    (art / "model.onnx").write_bytes(os.urandom(model_bytes))
    (art / "items.parquet").write_bytes(os.urandom(512))
    (art / "fallback.npz").write_bytes(b"shared-fallback-bytes" * 8)  # same in every version
    manifest = build_manifest(
        art,
        version=version,
        kind="sequential-recommender",
        io=IO,
        metrics={"ndcg@10": 0.4},
        parent=parent,
        signing={"method": SIGNING_METHOD, "key_id": keys.key_id},
    )
    write_manifest(art, manifest)
    sign_artifact(art, keys.private)
    return art
