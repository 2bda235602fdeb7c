"""Manifest: canonical JSON, hashing, directory listing, validation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import export
from export import (
    FileEntry,
    Manifest,
    ManifestError,
    build_manifest,
    hash_file,
    read_manifest,
    write_manifest,
)

IO = {
    "inputs": [{"name": "item_ids", "dtype": "int64", "shape": ["batch", 50]}],
    "outputs": [{"name": "scores", "dtype": "float32", "shape": ["batch", 101]}],
    "max_seq_len": 50,
    "n_items": 100,
}


def _manifest(directory: Path, **overrides: object) -> Manifest:
    kwargs: dict[str, object] = {
        "version": "20261129T071500Z-3f2a9c",
        "kind": "sequential-recommender",
        "io": IO,
        "metrics": {"ndcg@10": 0.41, "hr@10": 0.7},
        "created_at": "2026-11-29T07:15:00Z",
    }
    kwargs.update(overrides)
    return build_manifest(directory, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(os.urandom(3000))
    (tmp_path / "items.parquet").write_bytes(os.urandom(500))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "emb.npy").write_bytes(b"")
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "model.sig").write_text("sig")
    return tmp_path


def test_hash_file_streams_large_file(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # spans several 1 MiB chunks
    (tmp_path / "big").write_bytes(data)
    assert hash_file(tmp_path / "big") == (hashlib.sha256(data).hexdigest(), len(data))


def test_build_lists_files_sorted_without_manifest_and_signature(artifact_dir: Path) -> None:
    manifest = _manifest(artifact_dir)
    assert [f.path for f in manifest.files] == ["items.parquet", "model.onnx", "sub/emb.npy"]
    onnx = manifest.files[1]
    assert (onnx.sha256, onnx.size) == hash_file(artifact_dir / "model.onnx")
    assert manifest.format == "recdrill-artifact/1"


def test_json_round_trip(artifact_dir: Path) -> None:
    signing = {"method": "model-signing/ec-p256", "key_id": "0123456789abcdef"}
    manifest = _manifest(artifact_dir, parent="20261128T000000Z-aaaaaa", signing=signing)
    write_manifest(artifact_dir, manifest)
    assert read_manifest(artifact_dir) == manifest
    assert Manifest.from_json_bytes(manifest.to_json_bytes()) == manifest


def test_canonical_bytes_are_stable_and_sorted(artifact_dir: Path) -> None:
    manifest = _manifest(artifact_dir)
    data = manifest.to_json_bytes()
    assert data == _manifest(artifact_dir).to_json_bytes()
    assert data == Manifest.from_json_bytes(data).to_json_bytes()
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    expected = json.dumps(json.loads(data), sort_keys=True, indent=2).encode() + b"\n"
    assert data == expected
    # reordering keys in the input does not change the canonical output
    shuffled = json.dumps(dict(reversed(list(json.loads(data).items())))).encode()
    assert Manifest.from_json_bytes(shuffled).to_json_bytes() == data


def test_created_at_defaults_to_utc_now(artifact_dir: Path) -> None:
    manifest = build_manifest(artifact_dir, version="v1", kind="search-encoder", io=IO, metrics={})
    assert manifest.created_at.endswith("Z")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("format", "recdrill-artifact/2", "format"),
        ("kind", "llm", "kind"),
        ("created_at", "2026-11-29T07:15:00+02:00", "created_at"),
        ("created_at", "yesterday", "created_at"),
        ("metrics", {"ndcg@10": "high"}, "metrics"),
        ("io", {"inputs": []}, "io."),
        ("signing", {"method": "rsa", "key_id": "0123456789abcdef"}, "signing.method"),
        ("signing", {"method": "ed25519", "key_id": "XYZ"}, "signing.key_id"),
        ("files", [{"path": "../etc/passwd", "sha256": "0" * 64, "size": 1}], "files"),
        ("files", [{"path": "model.sig", "sha256": "0" * 64, "size": 1}], "files"),
        ("files", [{"path": "a", "sha256": "0" * 63, "size": 1}], "sha256"),
        (
            "files",
            [{"path": p, "sha256": "0" * 64, "size": 1} for p in ("b", "a")],
            "sorted",
        ),
        ("surprise", 1, "unknown"),
    ],
)
def test_invalid_manifest_is_rejected_naming_the_field(
    artifact_dir: Path, field: str, value: object, needle: str
) -> None:
    obj = json.loads(_manifest(artifact_dir).to_json_bytes())
    obj[field] = value
    with pytest.raises(ManifestError, match=needle):
        Manifest.from_json_bytes(json.dumps(obj).encode())


def test_build_rejects_values_json_cannot_hold(artifact_dir: Path) -> None:
    with pytest.raises(ManifestError, match="metrics"):
        _manifest(artifact_dir, metrics={"ndcg@10": "high"})
    with pytest.raises(ManifestError, match="io"):
        _manifest(artifact_dir, io={**IO, "extra": object()})


def test_unparsable_and_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="expected UTF-8 JSON"):
        Manifest.from_json_bytes(b"{not json")
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path)


def test_symlink_is_refused(artifact_dir: Path) -> None:
    (artifact_dir / "link").symlink_to(artifact_dir / "model.onnx")
    with pytest.raises(ManifestError, match="symbolic link"):
        _manifest(artifact_dir)


def test_file_entry_is_frozen() -> None:
    entry = FileEntry("model.onnx", "0" * 64, 1)
    with pytest.raises(AttributeError):
        entry.size = 2  # type: ignore[misc]


def test_public_surface_is_pinned() -> None:
    assert sorted(export.__all__) == sorted(
        [
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
    )
    assert all(hasattr(export, name) for name in export.__all__)


def test_import_stays_torch_free() -> None:
    """serving/ imports export: it must not drag in torch, onnx, transformers or training."""
    code = (
        "import sys, export; "
        "print(sorted(m for m in ('torch', 'onnx', 'transformers', 'training', 'model_signing')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"
