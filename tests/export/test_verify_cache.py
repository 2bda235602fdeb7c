"""VerifiedCache: an unchanged directory is not hashed again; any change is still refused."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import export.manifest
import export.verify
from export import ArtifactVerificationError, read_manifest
from export.verify import VerifiedCache, verify_artifact
from replication.testing import SigningKeys, flip_byte, make_artifact, make_keys

LATER_NS = 60 * 10**9  # the cache's clock runs a minute ahead: every file counts as settled


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def artifact(tmp_path: Path, keys: SigningKeys) -> Path:
    return make_artifact(tmp_path / "arts", "v1", keys)


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files whose bytes verification reads (digests and signature)."""
    seen: list[str] = []

    def counting(path: str | os.PathLike[str]) -> tuple[str, int]:
        seen.append(Path(path).name)
        return real(path)

    real = export.manifest.hash_file
    monkeypatch.setattr(export.manifest, "hash_file", counting)
    monkeypatch.setattr(export.verify, "hash_file", counting)
    return seen


def settled() -> VerifiedCache:
    return VerifiedCache(clock_ns=lambda: time.time_ns() + LATER_NS)


def next_ctime_tick(artifact: Path) -> None:
    """Wait (polling) until a new write gets a later ctime than any file of ``artifact``,
    so that a change made now is distinguishable (file timestamps are coarse)."""
    newest = max(p.stat().st_ctime_ns for p in artifact.iterdir())
    probe = artifact.parent / "probe"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe.write_bytes(b"x")
        if probe.stat().st_ctime_ns > newest:
            probe.unlink()
            return
    raise AssertionError("file ctime did not advance within 5 s")


def test_unchanged_directory_is_not_hashed_again(artifact: Path, keys: SigningKeys,
                                                 hashed: list[str]) -> None:
    cache = settled()
    first = verify_artifact(artifact, keys.public, cache=cache)
    assert "model.onnx" in hashed
    hashed.clear()
    assert verify_artifact(artifact, keys.public, cache=cache) == first == read_manifest(artifact)
    assert hashed == []


def test_recently_written_files_are_verified_in_full_again(artifact: Path, keys: SigningKeys,
                                                           hashed: list[str]) -> None:
    cache = VerifiedCache()  # the real clock: the files were written a moment ago
    verify_artifact(artifact, keys.public, cache=cache)
    hashed.clear()
    verify_artifact(artifact, keys.public, cache=cache)
    assert "model.onnx" in hashed


def test_in_place_change_keeping_size_and_mtime_is_refused(artifact: Path,
                                                           keys: SigningKeys) -> None:
    cache = settled()
    verify_artifact(artifact, keys.public, cache=cache)
    model = artifact / "model.onnx"
    before = model.stat()
    next_ctime_tick(artifact)
    flip_byte(model, offset=100)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))  # hide it from mtime
    assert model.stat().st_size == before.st_size
    with pytest.raises(ArtifactVerificationError) as info:
        verify_artifact(artifact, keys.public, cache=cache)
    assert (info.value.path, info.value.reason) == ("model.onnx", "digest-mismatch")


@pytest.mark.parametrize("change", ["replace", "add", "remove", "manifest"])
def test_any_other_change_is_refused(artifact: Path, keys: SigningKeys, change: str) -> None:
    cache = settled()
    verify_artifact(artifact, keys.public, cache=cache)
    if change == "replace":  # same size, new inode
        other = artifact.parent / "other"
        other.write_bytes(os.urandom((artifact / "model.onnx").stat().st_size))
        os.replace(other, artifact / "model.onnx")
    elif change == "add":
        (artifact / "extra.bin").write_bytes(b"x")
    elif change == "remove":
        (artifact / "items.parquet").unlink()
    else:
        shutil.copyfile(artifact / "manifest.json", artifact.parent / "m")
        os.replace(artifact.parent / "m", artifact / "manifest.json")
        flip_byte(artifact / "manifest.json", offset=-3)
    with pytest.raises(ArtifactVerificationError):
        verify_artifact(artifact, keys.public, cache=cache)


def test_another_key_is_checked_not_trusted(artifact: Path, keys: SigningKeys,
                                            tmp_path: Path) -> None:
    cache = settled()
    verify_artifact(artifact, keys.public, cache=cache)
    stranger = make_keys(tmp_path / "stranger")
    with pytest.raises(ArtifactVerificationError) as info:
        verify_artifact(artifact, stranger.public, cache=cache)
    assert info.value.reason == "key-mismatch"


def test_a_refused_directory_is_forgotten(artifact: Path, keys: SigningKeys,
                                          hashed: list[str]) -> None:
    cache = settled()
    verify_artifact(artifact, keys.public, cache=cache)
    original = (artifact / "items.parquet").read_bytes()
    (artifact / "items.parquet").write_bytes(b"y" * len(original))
    with pytest.raises(ArtifactVerificationError):
        verify_artifact(artifact, keys.public, cache=cache)
    (artifact / "items.parquet").write_bytes(original)
    hashed.clear()
    verify_artifact(artifact, keys.public, cache=cache)
    assert "model.onnx" in hashed
