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


# Canonical bytes as written by earlier releases (hand-validated dataclasses): any change to
# what the schema keeps or how it serialises breaks the signature of existing artifacts.
GOLDEN = b"""{
  "created_at": "2026-11-29T16:56:27Z",
  "files": [
    {
      "path": "items.parquet",
      "sha256": "ccef5806cbea7b36be4032568900b2f857ba43f2bb29752cff51db38fb1a1171",
      "size": 51061
    },
    {
      "path": "sub/model.onnx",
      "sha256": "1e99f0382ab924bd96c4eca1ff1a07106e678f116998af0e0a6233bdfa28f001",
      "size": 0
    }
  ],
  "format": "recdrill-artifact/1",
  "io": {
    "inputs": [
      {
        "dtype": "int64",
        "name": "input_ids",
        "shape": [
          "batch",
          "seq"
        ]
      }
    ],
    "item_index_base": 1,
    "max_seq_len": 50,
    "n_items": 1682,
    "outputs": [
      {
        "dtype": "float32",
        "name": "scores",
        "notes": {
          "x": null
        },
        "shape": [
          "batch",
          1682
        ]
      }
    ]
  },
  "kind": "sequential-recommender",
  "metrics": {
    "count": 3,
    "parity_max_abs_diff": 2.86102294921875e-06,
    "test_ndcg@10": 0.0
  },
  "parent": null,
  "signing": {
    "key_id": "8c2e5bca4341914b",
    "method": "model-signing/ec-p256"
  },
  "version": "20261129T165626Z"
}
"""


def test_existing_bytes_round_trip_exactly() -> None:
    manifest = Manifest.from_json_bytes(GOLDEN)
    assert manifest.to_json_bytes() == GOLDEN
    assert manifest.metrics["count"] == 3 and isinstance(manifest.metrics["count"], int)
    assert dict(manifest.io["outputs"][0])["notes"] == {"x": None}  # unknown keys are kept
    assert manifest.signing == {"key_id": "8c2e5bca4341914b", "method": "model-signing/ec-p256"}
    sha256 = "1e99f0382ab924bd96c4eca1ff1a07106e678f116998af0e0a6233bdfa28f001"
    assert manifest.files[1] == FileEntry("sub/model.onnx", sha256, 0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda o: o["io"]["inputs"][0].pop("dtype"), r"^io\.inputs\[0\]\.dtype: required field"),
        (lambda o: o["files"][1].update(size=True), r"^files\[1\]\.size: expected a valid integer"),
        (lambda o: o["files"][0].update(size=-1), r"^files\[0\]\.size: expected a non-negative"),
        (lambda o: o.update(version=""), r"^version: expected a non-empty string"),
        (lambda o: o.update(parent=7), r"^parent: expected a valid string, found 7"),
        (lambda o: o.pop("signing"), r"^signing: required field is missing"),
        (lambda o: o["metrics"].update(loss=float("nan")), r"^metrics\.loss: expected a finite"),
        (lambda o: o["io"].update(extra=float("inf")), r"^io: expected plain JSON values"),
        (lambda o: o["signing"].update(extra="x"), r"^signing\.extra: unknown field"),
        (
            lambda o: o.update(format="x", kind="y"),
            (r"^format: expected 'recdrill-artifact/1', found 'x'; this reader understands only "
             r"that format: re-export with this version of recdrill$"),
        ),
    ],
)
def test_refusal_names_the_field_path(edit: object, message: str) -> None:
    obj = json.loads(GOLDEN)
    edit(obj)  # type: ignore[operator]
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json_bytes(json.dumps(obj).encode())


def test_unknown_keys_of_a_file_entry_are_ignored_as_before() -> None:
    obj = json.loads(GOLDEN)
    obj["files"][0]["mode"] = "0644"
    assert Manifest.from_json_bytes(json.dumps(obj).encode()).to_json_bytes() == GOLDEN


def test_direct_construction_raises_manifest_error_naming_the_field() -> None:
    with pytest.raises(ManifestError, match=r"^sha256: expected 64 lowercase hex"):
        FileEntry("model.onnx", "abc", 1)
    with pytest.raises(ManifestError, match=r"^size: expected a valid integer"):
        FileEntry("model.onnx", "0" * 64, "1")  # type: ignore[arg-type]


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
