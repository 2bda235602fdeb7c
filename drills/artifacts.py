"""New signed versions derived from a served artifact, for drills that must publish during a
fault (primary-store loss) or push a bad model whose integrity is intact.

A derived version is a copy of the artifact's files (optionally changed by ``mutate``) with a
fresh manifest (new version, parent = the source) signed with the same key, and verified
before it is returned: to the system it is an ordinary, valid release.

Example:
    >>> derive_version(Path("art/v1"), Path("/tmp/d"), "v1-drill", priv, pub)  # doctest: +SKIP
    PosixPath('/tmp/d/v1-drill')
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.manifest import build_manifest, read_manifest, write_manifest
from export.signing import sign_artifact
from export.verify import verify_artifact

__all__ = ["derive_version", "shuffle_item_ids"]

_SIGNATURE_FILES = ("manifest.json", "model.sig")


def derive_version(source: Path, out_root: Path, version: str, private_key: Path,
                   public_key: Path, mutate: Callable[[Path], None] | None = None) -> Path:
    """Copy ``source`` to ``out_root/version``, apply ``mutate(dir)``, re-manifest, sign, verify."""
    old = read_manifest(source)
    target = out_root / version
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*_SIGNATURE_FILES))
    if mutate is not None:
        mutate(target)
    manifest = build_manifest(target, version=version, kind=old.kind, io=old.io,
                              metrics=old.metrics, parent=old.version, signing=old.signing)
    write_manifest(target, manifest)
    sign_artifact(target, private_key)
    verify_artifact(target, public_key)
    return target


def shuffle_item_ids(seed: int = 0) -> Callable[[Path], None]:
    """A mutation that keeps every file valid but scrambles which item each model output
    means (a permutation of the item table's ids and titles): a bad model, quality broken."""

    def mutate(directory: Path) -> None:
        import pandas as pd

        path = directory / "items.parquet"
        items = pd.read_parquet(path)
        order = np.random.default_rng(seed).permutation(len(items))
        for col in [c for c in items.columns if c != "index"]:
            items[col] = items[col].to_numpy()[order]
        items.to_parquet(path, index=False)

    return mutate
