from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import committed_store

from replication.checkout import checkout, node_store_path
from replication.errors import ConfigError, IntegrityError, StoreUnavailable, VersionError
from replication.keys import Keyring, KeySpec
from replication.repo import VersionStore
from replication.store import open_store
from replication.testing import flip_byte


@pytest.fixture(params=["clear", "aes-gcm"])
def keyring(request: pytest.FixtureRequest) -> Keyring:
    return Keyring() if request.param == "clear" else Keyring.from_keys([os.urandom(32)])


def _model_blob(vs: VersionStore, store_dir: Path, version: str) -> Path:
    entry = next(f for f in vs.get_record(version).files if f.path == "model.onnx")
    return store_dir / "blobs" / "sha256" / entry.sha256


def test_checkout_returns_a_verified_copy(tmp_path: Path, artifact, signing_keys, keyring) -> None:  # type: ignore[no-untyped-def]
    art = artifact("v1")
    committed_store(tmp_path / "s", keyring, art, signing_keys.public)
    version, path = checkout(
        tmp_path / "s",
        public_key_path=signing_keys.public,
        key_provider=keyring,
        cache_dir=tmp_path / "c",
    )
    assert version == "v1" and path == tmp_path / "c" / "v1"
    assert (path / "model.onnx").read_bytes() == (art / "model.onnx").read_bytes()
    if keyring.encrypting:  # at rest the model bytes never appear in clear
        blobs = [p.read_bytes() for p in (tmp_path / "s" / "blobs" / "sha256").iterdir()]
        assert (art / "model.onnx").read_bytes() not in blobs


def test_flipped_byte_is_never_handed_out(tmp_path: Path, artifact, signing_keys, keyring) -> None:  # type: ignore[no-untyped-def]
    vs = committed_store(
        tmp_path / "s", keyring, artifact("v1"), signing_keys.public, node="node-x"
    )
    flip_byte(_model_blob(vs, tmp_path / "s", "v1"))
    with pytest.raises(IntegrityError) as info:
        checkout(
            tmp_path / "s",
            public_key_path=signing_keys.public,
            key_provider=keyring,
            cache_dir=tmp_path / "c",
            node="node-x",
        )
    err = info.value
    assert (err.version, err.path, err.node) == ("v1", "model.onnx", "node-x")
    assert "v1/model.onnx on node-x" in str(err)
    assert not (tmp_path / "c" / "v1").exists() and not list((tmp_path / "c").glob(".v1.tmp*"))


def test_truncated_blob_is_rejected(tmp_path: Path, artifact, signing_keys, keyring) -> None:  # type: ignore[no-untyped-def]
    vs = committed_store(tmp_path / "s", keyring, artifact("v1"), signing_keys.public)
    blob = _model_blob(vs, tmp_path / "s", "v1")
    blob.write_bytes(blob.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match="model.onnx"):
        checkout(
            tmp_path / "s",
            public_key_path=signing_keys.public,
            key_provider=keyring,
            cache_dir=tmp_path / "c",
        )


def test_wrong_signing_key_is_rejected(tmp_path: Path, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    from replication.testing import make_keys

    committed_store(tmp_path / "s", Keyring(), artifact("v1"), signing_keys.public)
    other = make_keys(tmp_path / "other")
    with pytest.raises(IntegrityError, match="key-mismatch"):
        checkout(
            tmp_path / "s",
            public_key_path=other.public,
            key_provider=Keyring(),
            cache_dir=tmp_path / "c",
        )


def test_unsigned_artifact_is_rejected(tmp_path: Path, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    vs = committed_store(tmp_path / "s", Keyring(), artifact("v1"), signing_keys.public)
    record = vs.get_record("v1")
    vs.put_record(
        type(record)(
            record.version, tuple(f for f in record.files if f.path != "model.sig"), None, 0.0
        )
    )
    with pytest.raises(IntegrityError, match="model.sig"):
        checkout(
            tmp_path / "s",
            public_key_path=signing_keys.public,
            key_provider=Keyring(),
            cache_dir=tmp_path / "c",
        )


def test_tampered_cached_checkout_is_rebuilt(tmp_path: Path, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    art = artifact("v1")
    committed_store(tmp_path / "s", Keyring(), art, signing_keys.public)
    _, path = checkout(
        tmp_path / "s",
        public_key_path=signing_keys.public,
        key_provider=Keyring(),
        cache_dir=tmp_path / "c",
    )
    flip_byte(path / "model.onnx")
    _, again = checkout(
        tmp_path / "s",
        public_key_path=signing_keys.public,
        key_provider=Keyring(),
        cache_dir=tmp_path / "c",
    )
    assert (again / "model.onnx").read_bytes() == (art / "model.onnx").read_bytes()


def test_uncommitted_or_unknown_versions_are_refused(
    tmp_path: Path, artifact, signing_keys
) -> None:  # type: ignore[no-untyped-def]
    committed_store(tmp_path / "s", Keyring(), artifact("v1"), signing_keys.public)
    with pytest.raises(VersionError, match="not committed"):
        checkout(tmp_path / "s", "v9", public_key_path=signing_keys.public, key_provider=Keyring())
    with pytest.raises(StoreUnavailable):
        checkout(tmp_path / "missing", public_key_path=signing_keys.public, key_provider=Keyring())


def test_missing_key_fails_closed(tmp_path: Path, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    ring = Keyring.from_keys([os.urandom(32)])
    committed_store(tmp_path / "s", ring, artifact("v1"), signing_keys.public)
    with pytest.raises(Exception, match="key id"):
        checkout(
            tmp_path / "s",
            public_key_path=signing_keys.public,
            key_provider=KeySpec(env_var=None),
            cache_dir=tmp_path / "c",
        )


def test_refs_keep_previous(tmp_path: Path, artifact, signing_keys) -> None:  # type: ignore[no-untyped-def]
    from replication.repo import Ref
    from replication.sync import upload_artifact

    vs = committed_store(tmp_path / "s", Keyring(), artifact("v1"), signing_keys.public)
    upload_artifact(artifact("v2"), vs, signing_keys.public, now=0.0)
    vs.mark_committed(Ref("v2", 2, "t"))
    vs.flip_current(Ref("v2", 2, "t"))
    assert (vs.get_ref("current").version, vs.get_ref("previous").version) == ("v2", "v1")  # type: ignore[union-attr]
    shared = {f.sha256 for f in vs.get_record("v1").files} & {
        f.sha256 for f in vs.get_record("v2").files
    }
    assert shared  # fallback.npz is stored once (content addressing)


def test_node_store_path_layout(tmp_path: Path) -> None:
    assert (
        node_store_path(tmp_path, "abcdef0123456789ff") == tmp_path / "node-abcdef012345" / "store"
    )
    with pytest.raises(ConfigError):
        node_store_path(tmp_path)


def test_republishing_a_committed_version_is_refused(
    tmp_path: Path, artifact, signing_keys
) -> None:  # type: ignore[no-untyped-def]
    from replication.sync import upload_artifact

    art = artifact("v1")
    vs = committed_store(tmp_path / "s", Keyring(), art, signing_keys.public)
    with pytest.raises(VersionError, match="immutable"):
        upload_artifact(art, vs, signing_keys.public, now=0.0)
    assert isinstance(open_store(tmp_path / "s").read_bytes("store.json"), bytes)
