"""The verified Manifest is passed along: sources hand it over, the Catalog is built from it
(never from manifest.json again), and reloading an unchanged version skips the re-hash."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import pytest
from serving_factory import Artifacts

import export.manifest
import export.verify
from export.manifest import read_manifest
from export.verify import VerifiedCache, verify_artifact
from serving.catalog import Catalog
from serving.errors import ModelLoadError
from serving.schemas import RecommendRequest
from serving.source import DirectorySource, StoreSource


@pytest.fixture
def copy_v1(artifacts: Artifacts, tmp_path: Path) -> Path:
    """A private copy of v1 under ``tmp_path/arts/v1``, free to damage."""
    return Path(shutil.copytree(artifacts.path("v1"), tmp_path / "arts" / "v1"))


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = export.manifest.hash_file

    def counting(path: str | os.PathLike[str]) -> tuple[str, int]:
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(export.manifest, "hash_file", counting)
    monkeypatch.setattr(export.verify, "hash_file", counting)
    return seen


def test_catalog_comes_from_the_passed_manifest_not_the_file(copy_v1: Path,
                                                             artifacts: Artifacts) -> None:
    manifest = verify_artifact(copy_v1, artifacts.public_key)
    (copy_v1 / "manifest.json").unlink()  # a re-read would fail here
    passed = dataclasses.replace(manifest, version="v1-passed",
                                 io={**manifest.io, "max_seq_len": 7})
    catalog = Catalog.from_manifest(copy_v1, passed)
    assert (catalog.version, catalog.max_seq_len) == ("v1-passed", 7)
    assert catalog.some_user is None  # the artifact stores pseudonyms: no clear id to offer
    ranked = catalog.fallback(catalog.resolve(RecommendRequest(user_id="u1", k=3)))
    assert len(catalog.items_json(ranked)) == 3


def test_fetch_verified_hands_over_the_authenticated_manifest(artifacts: Artifacts) -> None:
    source = DirectorySource(str(artifacts.root), str(artifacts.public_key))
    artifact = source.fetch_verified("v1")
    assert artifact.path == artifacts.path("v1") and artifact.version == "v1"
    assert artifact.manifest == read_manifest(artifact.path)
    assert source.fetch("v1") == ("v1", artifact.path)


def test_reloading_an_unchanged_version_skips_the_rehash_not_a_swap(
        copy_v1: Path, artifacts: Artifacts, hashed: list[str]) -> None:
    ahead = VerifiedCache(clock_ns=lambda: time.time_ns() + 60 * 10**9)  # files count as old
    source = DirectorySource(str(copy_v1.parent), str(artifacts.public_key), verified=ahead)
    first = source.fetch_verified("v1")
    assert "model.onnx" in hashed
    hashed.clear()
    assert source.fetch_verified("v1") == first
    assert hashed == []
    swapped = copy_v1.parent / "swapped.onnx"  # same size, other bytes (the tampered copy)
    shutil.copyfile(artifacts.path("bad") / "model.onnx", swapped)
    assert swapped.stat().st_size == (copy_v1 / "model.onnx").stat().st_size
    os.replace(swapped, copy_v1 / "model.onnx")
    with pytest.raises(ModelLoadError, match="model.onnx"):
        source.fetch_verified("v1")


def test_store_reload_skips_the_rehash_but_a_damaged_store_is_still_refused(
        artifacts: Artifacts, tmp_path: Path, hashed: list[str]) -> None:
    """The checkpoint-corruption drill's path: blob damaged, checkout dropped, reload refused."""
    from replication.keys import Keyring
    from replication.repo import Ref, VersionStore
    from replication.store import open_store
    from replication.sync import upload_artifact
    from replication.testing import flip_byte

    vs = VersionStore(open_store(str(tmp_path / "store")), Keyring(), node="n")
    vs.init()
    record = upload_artifact(artifacts.path("v1"), vs, artifacts.public_key, now=0.0)
    ref = Ref(record.version, 1, "2026-11-29T00:00:00Z")
    vs.mark_committed(ref)
    vs.flip_current(ref)
    ahead = VerifiedCache(clock_ns=lambda: time.time_ns() + 60 * 10**9)
    source = StoreSource(str(tmp_path / "store"), str(artifacts.public_key), verified=ahead)
    first = source.fetch_verified("v1")  # a fresh copy, verified in full
    assert first.manifest == read_manifest(artifacts.path("v1"))
    source.fetch_verified("v1")  # the existing checkout, verified in full and remembered
    hashed.clear()
    assert source.fetch_verified("v1") == first
    assert hashed == []
    blob = next(f.sha256 for f in record.files if f.path == "model.onnx")
    flip_byte(tmp_path / "store" / "blobs" / "sha256" / blob)
    shutil.rmtree(first.path)
    with pytest.raises(ModelLoadError, match="model.onnx"):
        source.fetch_verified("v1")

