"""Package a training checkpoint into a signed, verified artifact directory.

Steps: export ONNX → optimise → parity (refused on failure) → optional int8 (kept only if
its top-10 overlap with fp32 is ≥ 0.9) → item table → fallback lists → optional product
search (``export.search_export``: query encoder and item embeddings under ``search/``) →
manifest → sign → verify. All of it happens in a staging directory renamed into place at the
end, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from durable import atomic_write_bytes, fsync_dir
from export.errors import ExportError, QuantizationRejected
from export.fallback import build_fallback
from export.manifest import build_manifest, write_manifest
from export.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, optimize_onnx
from export.parity import ParityReport, accept_quantized, check_parity, probe_grid
from export.quantize import ort_scorer, quantize_int8
from export.signing import SIGNING_METHOD, key_id_of, sign_artifact
from export.verify import verify_artifact
from security.errors import SecurityError
from security.pseudonym import Pseudonymiser
from training.checkpoint import Checkpoint, item_table
from training.sequences import left_pad

if TYPE_CHECKING:
    from export.search_export import SearchExport

KIND = "sequential-recommender"


@dataclass(frozen=True)
class PackageResult:
    """Where the artifact went and what the checks measured."""

    path: Path
    version: str
    parity: ParityReport
    int8_overlap: float | None
    fused_ops: dict[str, int]
    search: SearchExport | None = None
    pseudonym_key_id: str | None = None


def _torch_scorer(checkpoint: Checkpoint) -> Any:
    import torch

    model = checkpoint.model.eval()

    def score(ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(ids, np.int64))).numpy()

    return score


def _test_batches(checkpoint: Checkpoint, batch: int = 256) -> list[np.ndarray]:
    histories, _ = checkpoint.data.split("test")
    padded = left_pad(histories, checkpoint.model.config.max_seq_len)
    return [padded[i:i + batch] for i in range(0, len(padded), batch)]


def _io_spec(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "inputs": [{"name": INPUT_NAME, "dtype": "int64", "shape": ["batch", "seq"]}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32",
                     "shape": ["batch", checkpoint.data.n_items]}],
        "max_seq_len": checkpoint.model.config.max_seq_len,
        "n_items": checkpoint.data.n_items,
        "item_index_base": 1,
        "padding_index": 0,
    }


def _write_tables(checkpoint: Checkpoint, staging: Path, pseudonymiser: Pseudonymiser) -> None:
    buf = io.BytesIO()
    item_table(checkpoint.data, checkpoint.items).to_parquet(buf, index=False)
    atomic_write_bytes(staging / "items.parquet", buf.getvalue())
    histories, _ = checkpoint.data.split("test")
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    buf = io.BytesIO()
    # Clear ids stay in the training zone: the artifact names users by pseudonym only.
    np.savez(buf, user_ids=np.array(pseudonymiser.many(checkpoint.data.user_ids), dtype=str),
             flat=np.concatenate(histories), offsets=np.cumsum(lengths)[:-1])
    atomic_write_bytes(staging / "histories.npz", buf.getvalue())
    lists = build_fallback(histories, checkpoint.data.n_items)
    buf = io.BytesIO()
    np.savez(buf, popular=lists.popular, covisit=lists.covisit)
    atomic_write_bytes(staging / "fallback.npz", buf.getvalue())


def load_pseudonymiser(path: Path | None = None) -> Pseudonymiser:
    """The user-id pseudonymiser export writes artifacts with: the key at ``path`` (which must
    exist), else the default key, generated on first use; ExportError naming the file."""
    try:
        return Pseudonymiser.load(path, create=path is None)
    except SecurityError as exc:
        raise ExportError(f"pseudonym key: {exc}") from exc


def new_version(onnx_path: Path) -> str:
    """A sortable version name: UTC time plus a digest prefix of the graph."""
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:6]
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{digest}"


def package_recommender(checkpoint: Checkpoint, out_dir: Path, private_key: Path,
                        public_key: Path, *, version: str | None = None,
                        parent: str | None = None, quantize: bool = True,
                        search: Path | None = None,
                        pseudonymiser: Pseudonymiser | None = None) -> PackageResult:
    """Build, check, sign and verify an artifact; returns what was measured.

    With ``search`` (a search checkpoint directory), the artifact also carries the product
    search encoder and item embeddings under ``search/``, described by ``io["search"]``.
    User ids are written as pseudonyms under ``pseudonymiser`` (default: the key at
    ``security.paths.pseudonym_key_path()``, generated on first use), and the manifest
    records its ``pseudonym_key_id`` so that serving can check it holds the same key.

    Example:
        >>> package_recommender(load_checkpoint(Path("runs/ckpt")), Path("artifacts/v1"),
        ...                     priv, pub)  # doctest: +SKIP
    """
    if out_dir.exists():
        raise ExportError(f"{out_dir} already exists; artifacts are immutable: choose a new "
                          "output directory or version")
    pseudonymiser = pseudonymiser or load_pseudonymiser()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    scratch = Path(tempfile.mkdtemp(prefix="recdrill-export-"))
    try:
        cfg = checkpoint.model.config
        raw = export_onnx(checkpoint.model, scratch / "raw.onnx", cfg.max_seq_len)
        fused = optimize_onnx(raw, staging / "model.onnx", cfg.num_heads, cfg.hidden_size)
        reference, fp32 = _torch_scorer(checkpoint), ort_scorer(staging / "model.onnx")
        tests = _test_batches(checkpoint)
        parity = check_parity(reference, fp32,
                              probe_grid(checkpoint.data.n_items, cfg.max_seq_len), tests)
        overlap = None
        if quantize:
            int8_path = quantize_int8(raw, staging / "model.int8.onnx")
            try:
                overlap = accept_quantized(fp32, ort_scorer(int8_path), tests)
            except QuantizationRejected:
                int8_path.unlink()
        _write_tables(checkpoint, staging, pseudonymiser)
        io_spec = _io_spec(checkpoint)
        searched = None
        if search is not None:
            from export.search_export import export_search  # transformers: only when asked

            searched = export_search(search, item_table(checkpoint.data, checkpoint.items),
                                     staging, scratch, quantize=quantize)
            io_spec["search"] = searched.io
        version = version or new_version(staging / "model.onnx")
        metrics = {f"test_{k}": v for k, v in
                   checkpoint.meta.get("metrics", {}).get("test", {}).get("sasrec", {}).items()}
        metrics.update({"parity_max_abs_diff": parity.max_abs_diff,
                        "parity_top10_identical": parity.top10_identical})
        if overlap is not None:
            metrics["int8_top10_overlap"] = overlap
        if searched is not None:
            metrics.update(searched.metrics)
        manifest = build_manifest(staging, version=version, kind=KIND, io=io_spec,
                                  metrics=metrics, parent=parent,
                                  signing={"method": SIGNING_METHOD,
                                           "key_id": key_id_of(public_key)},
                                  pseudonym_key_id=pseudonymiser.key_id)
        write_manifest(staging, manifest)
        sign_artifact(staging, private_key)
        verify_artifact(staging, public_key)
        os.rename(staging, out_dir)
        fsync_dir(out_dir.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return PackageResult(out_dir, version, parity, overlap, fused, searched,
                         pseudonymiser.key_id)
