"""End to end through the real exporter: tiny model → ONNX → parity → int8 → sign → verify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from export.errors import ArtifactVerificationError, ExportError
from export.package import package_recommender
from export.signing import generate_signing_key
from export.verify import verify_artifact
from training.checkpoint import Checkpoint
from training.clean import SequenceData
from training.model import ModelConfig, SASRec


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    rng = np.random.default_rng(0)
    seqs = tuple(rng.integers(1, 31, size=int(rng.integers(4, 12))) for _ in range(40))
    data = SequenceData(tuple(f"i{i}" for i in range(30)), tuple(f"u{u}" for u in range(40)), seqs)
    torch.manual_seed(0)
    model = SASRec(30, ModelConfig(hidden_size=16, num_layers=1, num_heads=2, max_seq_len=10)).eval()
    items = pd.DataFrame({"item_id": ["i3"], "title": ["Three"], "category": ["c"]})
    return Checkpoint(model, data, items, {"metrics": {"test": {"sasrec": {"ndcg@10": 0.5}}}})


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    generate_signing_key(d / "k", d / "k.pub")
    return d / "k", d / "k.pub"


@pytest.fixture(scope="module")
def artifact(checkpoint: Checkpoint, keys: tuple[Path, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("art") / "v1"
    result = package_recommender(checkpoint, out, *keys, version="v1", parent="v0")
    assert result.parity.max_abs_diff <= 1e-4 and result.parity.top10_identical >= 0.99
    return out


def test_artifact_verifies_and_records_io(artifact: Path, keys: tuple[Path, Path]) -> None:
    manifest = verify_artifact(artifact, keys[1])
    assert (manifest.version, manifest.parent, manifest.kind) == ("v1", "v0", "sequential-recommender")
    assert manifest.io["n_items"] == 30 and manifest.io["max_seq_len"] == 10
    assert manifest.metrics["test_ndcg@10"] == 0.5
    assert {"model.onnx", "items.parquet", "fallback.npz", "histories.npz"} <= {
        f.path for f in manifest.files}


def test_onnx_matches_torch_at_any_length(artifact: Path, checkpoint: Checkpoint) -> None:
    session = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    for ids in (np.array([[5]]), np.array([[0, 0, 1, 2, 3, 4, 5, 6, 7, 8]] * 3)):
        with torch.no_grad():
            ref = checkpoint.model(torch.from_numpy(ids)).numpy()
        assert np.abs(session.run(None, {"input_ids": ids})[0] - ref).max() <= 1e-4


def test_item_table_and_fallback(artifact: Path) -> None:
    items = pd.read_parquet(artifact / "items.parquet")
    assert items["index"].tolist() == list(range(1, 31))
    assert items.set_index("item_id").loc["i3", "title"] == "Three"
    with np.load(artifact / "fallback.npz") as npz:
        assert npz["covisit"].shape[0] == 31 and len(npz["popular"]) == 30


def test_artifacts_are_immutable(checkpoint: Checkpoint, keys: tuple[Path, Path],
                                 artifact: Path) -> None:
    with pytest.raises(ExportError, match="already exists"):
        package_recommender(checkpoint, artifact, *keys)


def test_tampered_graph_is_named(artifact: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactVerificationError) as err:
        verify_artifact(copy, keys[1])
    assert err.value.path == "model.onnx"


def test_refused_export_leaves_nothing(checkpoint: Checkpoint, keys: tuple[Path, Path],
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from export import package
    from export.errors import ParityError

    def refuse(*args: object, **kwargs: object) -> None:
        raise ParityError("forced")

    monkeypatch.setattr(package, "check_parity", refuse)
    with pytest.raises(ParityError):
        package_recommender(checkpoint, tmp_path / "v2", *keys)
    assert list(tmp_path.iterdir()) == []
