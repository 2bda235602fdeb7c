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

__all__ = ["blur_search_embeddings", "derive_version", "shuffle_item_ids",
           "shuffle_search_embeddings"]

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
                              metrics=old.metrics, parent=old.version, signing=old.signing,
                              pseudonym_key_id=old.pseudonym_key_id)
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


def shuffle_search_embeddings(seed: int = 0) -> Callable[[Path], None]:
    """A mutation that breaks product search only: the precomputed item embeddings are
    permuted (every file still valid and signed; the recommender and its item table are
    untouched). Raises FileNotFoundError when the artifact carries no search."""

    def mutate(directory: Path) -> None:
        path = directory / "search" / "item_embeddings.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the artifact carries no search model")
        vectors = np.load(path, allow_pickle=False)
        order = np.random.default_rng(seed).permutation(len(vectors))
        with open(path, "wb") as fh:
            np.save(fh, vectors[order])

    return mutate


def blur_search_embeddings(seed: int = 0, noise: float = 3.0) -> Callable[[Path], None]:
    """A mutation that makes product search worse without breaking it outright: Gaussian noise
    of norm about ``noise`` is added to every (unit) item embedding, then rows are normalised
    again. An item's own text still finds it (the load probe passes), paraphrases often do
    not: a search-only regression that only a search SLO can see. On ML-100k, noise 3 took
    test NDCG@10 from 0.73 to 0.50 while every one of 400 items' own texts still found it. Raises FileNotFoundError
    when the artifact carries no search."""

    def mutate(directory: Path) -> None:
        path = directory / "search" / "item_embeddings.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the artifact carries no search model")
        vectors = np.load(path, allow_pickle=False)
        rng = np.random.default_rng(seed)
        blurred = vectors + rng.normal(0.0, noise / np.sqrt(vectors.shape[1]), vectors.shape)
        blurred /= np.linalg.norm(blurred, axis=1, keepdims=True)
        with open(path, "wb") as fh:
            np.save(fh, blurred.astype(np.float32))

    return mutate
