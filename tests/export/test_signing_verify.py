"""Signing and verification: one changed byte anywhere is refused, naming that file."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from export import (
    SIGNATURE_FILE,
    SIGNING_METHOD,
    ArtifactVerificationError,
    SigningError,
    build_manifest,
    generate_signing_key,
    key_id_of,
    read_manifest,
    sign_artifact,
    verify_artifact,
    write_manifest,
)

IO = {
    "inputs": [{"name": "item_ids", "dtype": "int64", "shape": ["batch", 50]}],
    "outputs": [{"name": "scores", "dtype": "float32", "shape": ["batch", 101]}],
    "max_seq_len": 50,
    "n_items": 100,
}
# Named like the contract's artifact; random bytes stand in for the real formats.
DATA_FILES = {
    "model.onnx": 4096,
    "model.int8.onnx": 1024,
    "items.parquet": 777,
    "fallback.npz": 300,
}
ALL_FILES = sorted([*DATA_FILES, "manifest.json", SIGNATURE_FILE])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("keys")
    key_id = generate_signing_key(root / "signing.pem", root / "signing.pub")
    return root / "signing.pem", root / "signing.pub", key_id


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("other-keys")
    key_id = generate_signing_key(root / "other.pem", root / "other.pub")
    return root / "other.pem", root / "other.pub", key_id


def make_artifact(root: Path, private: Path, key_id: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, size in DATA_FILES.items():
        (root / name).write_bytes(os.urandom(size))
    manifest = build_manifest(
        root,
        version="20261129T071500Z-3f2a9c",
        kind="sequential-recommender",
        io=IO,
        metrics={"ndcg@10": 0.41},
        signing={"method": SIGNING_METHOD, "key_id": key_id},
    )
    write_manifest(root, manifest)
    sign_artifact(root, private)
    return root


@pytest.fixture
def artifact(tmp_path: Path, keys: tuple[Path, Path, str]) -> Path:
    return make_artifact(tmp_path / "art", keys[0], keys[2])


def refused(artifact: Path, public: Path) -> ArtifactVerificationError:
    with pytest.raises(ArtifactVerificationError) as info:
        verify_artifact(artifact, public)
    return info.value


def test_generated_key_files(keys: tuple[Path, Path, str]) -> None:
    private, public, key_id = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes()
    assert key_id_of(public) == key_id and len(key_id) == 16
    with pytest.raises(SigningError, match="already exists"):
        generate_signing_key(private, public)


def test_sign_then_verify(artifact: Path, keys: tuple[Path, Path, str]) -> None:
    manifest = verify_artifact(artifact, keys[1])
    assert manifest == read_manifest(artifact)
    assert sorted(p.name for p in artifact.iterdir()) == ALL_FILES
    assert SIGNATURE_FILE not in [f.path for f in manifest.files]


def test_verifies_after_copy_to_another_directory(
    artifact: Path, tmp_path: Path, keys: tuple[Path, Path, str]
) -> None:
    copy = tmp_path / "node-2" / "20261129T071500Z-3f2a9c"
    shutil.copytree(artifact, copy)
    assert verify_artifact(copy, keys[1]).version == "20261129T071500Z-3f2a9c"


@pytest.mark.parametrize("name", ALL_FILES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_changed_byte_names_exactly_that_file(
    artifact: Path, keys: tuple[Path, Path, str], name: str, where: str
) -> None:
    path = artifact / name
    data = bytearray(path.read_bytes())
    index = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[index] ^= 0x01
    path.write_bytes(bytes(data))
    err = refused(artifact, keys[1])
    assert err.path == name, str(err)
    assert name in str(err)


def _edit_digest(text: str) -> str:
    sha256 = read_manifest_text_sha(text, "model.onnx")
    return text.replace(sha256, sha256[:-1] + ("0" if sha256[-1] != "0" else "1"))


def read_manifest_text_sha(text: str, path: str) -> str:
    start = text.index(f'"path": "{path}"')
    key = '"sha256": "'
    at = text.index(key, start) + len(key)
    return text[at : at + 64]


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_edit_digest, "not-signed"),  # would otherwise blame model.onnx
        (lambda t: t.replace('"size": 4096', '"size": 4095'), "not-signed"),
        (lambda t: t.replace("0.41", "0.99"), "not-signed"),
        (lambda t: t.replace('"model.onnx"', '"model.onnz"'), "not-signed"),
        (
            lambda t: re.sub(r'"key_id": "[0-9a-f]{16}"', '"key_id": "' + "0" * 16 + '"', t),
            "key-mismatch",
        ),
        (lambda t: t.replace('"kind": "sequential-recommender"', '"kind": "llm"'), "malformed"),
    ],
)
def test_valid_but_edited_manifest_is_named_not_the_data_file(
    artifact: Path, keys: tuple[Path, Path, str], edit: object, reason: str
) -> None:
    path = artifact / "manifest.json"
    text = path.read_text()
    edited = edit(text)  # type: ignore[operator]
    assert edited != text
    path.write_text(edited)
    err = refused(artifact, keys[1])
    assert (err.path, err.reason) == ("manifest.json", reason), str(err)


def test_wrong_public_key_is_refused_naming_the_expected_key(
    artifact: Path, keys: tuple[Path, Path, str], other_keys: tuple[Path, Path, str]
) -> None:
    err = refused(artifact, other_keys[1])
    assert (err.path, err.reason) == ("manifest.json", "key-mismatch")
    assert keys[2] in str(err) and other_keys[2] in str(err)


def test_signature_by_another_key_is_refused(
    artifact: Path, tmp_path: Path, keys: tuple[Path, Path, str], other_keys: tuple[Path, Path, str]
) -> None:
    foreign = make_artifact(tmp_path / "foreign", other_keys[0], other_keys[2])
    shutil.copy(foreign / SIGNATURE_FILE, artifact / SIGNATURE_FILE)
    err = refused(artifact, keys[1])
    assert (err.path, err.reason) == (SIGNATURE_FILE, "bad-signature")


def test_extra_file_is_named(artifact: Path, keys: tuple[Path, Path, str]) -> None:
    (artifact / "extra.bin").write_bytes(b"x")
    err = refused(artifact, keys[1])
    assert (err.path, err.reason) == ("extra.bin", "unlisted")
    assert "remove it" in str(err)


def test_missing_file_is_named(artifact: Path, keys: tuple[Path, Path, str]) -> None:
    (artifact / "items.parquet").unlink()
    err = refused(artifact, keys[1])
    assert (err.path, err.reason) == ("items.parquet", "missing")


def test_missing_signature_is_named(artifact: Path, keys: tuple[Path, Path, str]) -> None:
    (artifact / SIGNATURE_FILE).unlink()
    err = refused(artifact, keys[1])
    assert (err.path, err.reason) == (SIGNATURE_FILE, "missing")


def test_missing_manifest_is_named(artifact: Path, keys: tuple[Path, Path, str]) -> None:
    (artifact / "manifest.json").unlink()
    err = refused(artifact, keys[1])
    assert (err.path, err.reason) == ("manifest.json", "missing")


def test_rewritten_manifest_matching_a_swapped_file_is_refused(
    artifact: Path, keys: tuple[Path, Path, str]
) -> None:
    """An attacker swaps a file and rebuilds manifest.json to match: the signature catches it."""
    (artifact / "model.onnx").write_bytes(os.urandom(4096))
    old = read_manifest(artifact)
    new = build_manifest(
        artifact,
        version=old.version,
        kind=old.kind,
        io=old.io,
        metrics=old.metrics,
        created_at=old.created_at,
        signing=old.signing,
    )
    write_manifest(artifact, new)
    err = refused(artifact, keys[1])
    assert (err.path, err.reason) == ("manifest.json", "not-signed")


def test_sign_refuses_a_manifest_that_does_not_describe_the_directory(
    artifact: Path, keys: tuple[Path, Path, str]
) -> None:
    (artifact / "late.bin").write_bytes(b"late")
    with pytest.raises(SigningError, match="late.bin"):
        sign_artifact(artifact, keys[0])


def test_sign_refuses_a_manifest_naming_another_key(
    artifact: Path, other_keys: tuple[Path, Path, str]
) -> None:
    with pytest.raises(SigningError, match=other_keys[2]):
        sign_artifact(artifact, other_keys[0])


def test_unreadable_public_key_is_a_signing_error(artifact: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(SigningError, match="bad.pub"):
        verify_artifact(artifact, tmp_path / "bad.pub")
