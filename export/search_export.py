"""Product search in the artifact: the query encoder as ONNX plus every item's embedding.

Reads a search checkpoint (Hugging Face ``save_pretrained`` model and tokenizer, plus
``search_meta.json`` and ``queries.parquet``) and writes, under ``staging/search/``::

    encoder.onnx          input_ids, attention_mask: int64 [batch, seq] → embedding: float32
                          [batch, dim], mean pooling over the mask then L2-normalised, in-graph
    encoder.int8.onnx     per-channel int8 of the raw export; only if its top-10 overlap ≥ 0.9
    tokenizer.json        the checkpoint's fast tokenizer, truncating at max_query_tokens and
                          padding to the longest query: serving needs only ``tokenizers``
    item_embeddings.npy   float32 [n_items, dim], row r = item index r + 1, L2-normalised
    queries.parquet       the held-out queries (query, split, relevant item ids), as given

Steps: export (eager attention, so onnxruntime fuses it) → optimise → item embeddings from the
optimised graph → parity with PyTorch on a probe grid and the held-out queries (refused on
failure) → optional int8 → retrieval quality of what is shipped, on the test queries.

Uses torch and transformers; never imported by ``export/__init__``.

Example:
    >>> result = export_search(Path("runs/search"), items, staging, scratch)  # doctest: +SKIP
    >>> result.io["graph"], result.metrics["search_onnx_test_ndcg@10"]  # doctest: +SKIP
    ('search/encoder.onnx', 0.41)
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tokenizers import Tokenizer

from durable import atomic_write_bytes, atomic_writer
from export.errors import ExportError, ParityError, QuantizationRejected
from export.onnx_export import OPSET, optimize_onnx
from export.parity import ParityReport, accept_quantized
from export.quantize import quantize_int8
from retrieval import exact_search, item_text, ndcg_at_k, recall_at_k, top_k_rows

__all__ = ["CHECKPOINT_FORMAT", "SEARCH_DIR", "SearchExport", "SearchMeta",
           "check_search_parity", "export_search", "serving_tokenizer",
           "top10_identical_up_to_ties"]

CHECKPOINT_FORMAT = "recdrill-search-checkpoint/1"
SEARCH_DIR = "search"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "embedding"
ITEM_TEXT = "title (category)"
#: Batch sizes of the parity probes, each with short, max-length and mixed queries.
PROBE_BATCHES = (1, 3, 16)
# Read at call time, so a test can tighten them.
MAX_ABS_DIFF = 1e-4
MIN_TOP10_IDENTICAL = 0.99
MIN_INT8_OVERLAP = 0.9
#: Items whose reference scores differ by less than this are tied (duplicate titles are).
TIE_TOLERANCE = 1e-5
_ENCODE_BATCH = 64
_QUERY_COLUMNS = ("query", "split", "relevant")

Batch = tuple[np.ndarray, np.ndarray]  # input_ids, attention_mask: int64 [batch, seq]
EncodeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SearchMeta:
    """What ``search_meta.json`` fixes: token limits and the offline metrics by method."""

    max_query_tokens: int
    max_item_tokens: int
    test_metrics: dict[str, dict[str, float]]

    @classmethod
    def read(cls, checkpoint: Path) -> SearchMeta:
        """Parse and check ``checkpoint/search_meta.json``; ExportError says what is wrong."""
        path = checkpoint / "search_meta.json"
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ExportError(f"{path}: expected the search checkpoint's JSON metadata "
                              f"({exc}); pass a directory written by search fine-tuning") from exc
        expected = {"format": CHECKPOINT_FORMAT, "pooling": "mean", "normalized": True}
        for key, value in expected.items():
            if meta.get(key) != value:
                raise ExportError(f"{path}: expected {key} = {value!r}, found "
                                  f"{meta.get(key)!r}; this exporter serves mean-pooled, "
                                  "normalised embeddings of that checkpoint format only")
        limits = {key: meta.get(key) for key in ("max_query_tokens", "max_item_tokens")}
        for key, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 3:
                raise ExportError(f"{path}: expected {key} as an integer ≥ 3, found {value!r}")
        test = meta.get("metrics", {}).get("test", {})
        return cls(int(meta["max_query_tokens"]), int(meta["max_item_tokens"]),
                   {method: {k: float(v) for k, v in values.items() if _is_number(v)}
                    for method, values in test.items() if isinstance(values, dict)})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class SearchExport:
    """What ``export_search`` wrote and measured: the manifest's ``io["search"]`` and metrics."""

    io: dict[str, Any]
    metrics: dict[str, float]
    parity: ParityReport
    int8_overlap: float | None
    fused_ops: dict[str, int]
    seconds: float


class _PooledEncoder(torch.nn.Module):
    """Keyword call, zero token types, mean pooling over the mask, L2 norm: all in the graph."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def serving_tokenizer(hf_tokenizer: Any, max_tokens: int) -> Tokenizer:
    """The fast tokenizer behind ``hf_tokenizer``, truncating at ``max_tokens`` and padding to
    the longest text of a batch: the same input_ids and attention_mask as
    ``hf_tokenizer(texts, padding=True, truncation=True, max_length=max_tokens)``.

    Example:
        >>> tok = serving_tokenizer(AutoTokenizer.from_pretrained(path), 32)  # doctest: +SKIP
        >>> len(tok.encode("a " * 100).ids)  # doctest: +SKIP
        32
    """
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise ExportError(f"expected a fast (tokenizers-backed) tokenizer, found "
                          f"{type(hf_tokenizer).__name__}; save the checkpoint with tokenizer.json")
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.enable_truncation(max_length=max_tokens,
                                direction=str(hf_tokenizer.truncation_side))
    tokenizer.enable_padding(pad_id=int(hf_tokenizer.pad_token_id),
                             pad_token=str(hf_tokenizer.pad_token),
                             direction=str(hf_tokenizer.padding_side))
    return tokenizer


def _tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> Batch:
    encodings = tokenizer.encode_batch(list(texts))
    return (np.array([e.ids for e in encodings], dtype=np.int64),
            np.array([e.attention_mask for e in encodings], dtype=np.int64))


def _load(checkpoint: Path) -> tuple[Any, torch.nn.Module, Any]:
    from transformers import AutoModel, AutoTokenizer

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        # Eager attention: onnxruntime's BERT optimizer fuses no attention otherwise.
        model = AutoModel.from_pretrained(checkpoint, local_files_only=True,
                                          attn_implementation="eager")
    except (OSError, ValueError) as exc:
        raise ExportError(f"{checkpoint}: cannot load the search model and tokenizer ({exc}); "
                          "expected a save_pretrained directory") from exc
    model.eval()
    return hf_tokenizer, _PooledEncoder(model).eval(), model.config


def _export_onnx(encoder: torch.nn.Module, tokenizer: Tokenizer, path: Path) -> Path:
    example = _tokenize(tokenizer, ["an example query", "a second, somewhat longer one"])
    axes = {name: {0: "batch", 1: "seq"} for name in INPUT_NAMES}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(encoder, tuple(torch.from_numpy(a) for a in example), str(path),
                              dynamo=False, opset_version=OPSET, input_names=list(INPUT_NAMES),
                              output_names=[OUTPUT_NAME],
                              dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
        onnx.checker.check_model(str(path))
    except Exception as exc:  # the exporter raises many unrelated types
        raise ExportError(f"ONNX export of the search encoder failed: {exc}") from exc
    return path


def _torch_encoder(encoder: torch.nn.Module) -> EncodeFn:
    def encode(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())

    return encode


def _ort_encoder(path: Path) -> EncodeFn:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: mask}
        return np.asarray(session.run([OUTPUT_NAME], feed)[0])

    return encode


def _batches(tokenizer: Tokenizer, texts: Sequence[str],
             size: int = _ENCODE_BATCH) -> Iterator[Batch]:
    for start in range(0, len(texts), size):
        yield _tokenize(tokenizer, texts[start:start + size])


def _encode_all(encode: EncodeFn, batches: Sequence[Batch]) -> np.ndarray:
    return np.concatenate([encode(ids, mask) for ids, mask in batches]).astype(np.float32)


def _encode_items(encode: EncodeFn, tokenizer: Tokenizer, texts: Sequence[str],
                  dim: int) -> np.ndarray:
    """Row r embeds ``texts[r]``; encoded shortest first, so that batches pad little."""
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(list(texts))])
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(texts), dim), dtype=np.float32)
    progress = Progress(TextColumn("[bold]search[/] item embeddings"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True))
    with progress:
        task = progress.add_task("", total=len(texts))
        for start in range(0, len(texts), _ENCODE_BATCH):
            rows = order[start:start + _ENCODE_BATCH]
            out[rows] = encode(*_tokenize(tokenizer, [texts[r] for r in rows]))
            progress.advance(task, len(rows))
    return out


def _probe_texts(pool: Sequence[str], seed: int = 0) -> list[list[str]]:
    """Short (one word), max-length (far past the limit) and mixed batches at each size."""
    words = sorted({w for text in pool for w in text.split()}) or ["query"]
    rng = np.random.default_rng(seed)

    def text(n_words: int) -> str:
        return " ".join(rng.choice(words, n_words))

    probes = []
    for size in PROBE_BATCHES:
        probes.append([text(1) for _ in range(size)])
        probes.append([text(200) for _ in range(size)])
        probes.append([text(int(n)) for n in rng.integers(1, 40, size)])
    return probes


def top10_identical_up_to_ties(reference: np.ndarray, candidate: np.ndarray,
                                tol: float = TIE_TOLERANCE) -> float:
    """Share of rows whose candidate top-10, scored by ``reference``, has the reference's own
    top-10 scores position by position (within ``tol``): the same ranking, but two tied items
    (identical item texts embed alike) may come in either order.

    Example:
        >>> ref = np.array([[0.9, 0.9] + [0.1] * 10])
        >>> top10_identical_up_to_ties(ref, ref[:, [1, 0] + list(range(2, 12))])
        1.0
    """
    ref_val = top_k_rows(reference, 10)[1]
    cand_idx, _ = top_k_rows(candidate, 10)
    cand_val = np.take_along_axis(reference, cand_idx, axis=1)
    return float((np.abs(ref_val - cand_val) <= tol).all(axis=1).mean())


def check_search_parity(probes: Sequence[tuple[np.ndarray, np.ndarray]],
                        held_out: tuple[np.ndarray, np.ndarray],
                        items: np.ndarray) -> ParityReport:
    """Judge (reference, candidate) embedding pairs: the worst difference over probes and
    held-out queries, and the share of held-out queries whose top-10 ``items`` are identical
    up to ties; raise :class:`ParityError` past the limits.

    Example:
        >>> e = np.eye(12, dtype=np.float32)
        >>> check_search_parity([(e, e + 1e-6)], (e, e), e).max_abs_diff <= 1e-6
        True
    """
    worst = max((float(np.abs(ref - cand).max()) for ref, cand in [*probes, held_out]),
                default=0.0)
    ref, cand = held_out
    identical = top10_identical_up_to_ties(ref @ items.T, cand @ items.T)
    report = ParityReport(worst, identical, len(ref), len(probes))
    if worst > MAX_ABS_DIFF:
        raise ParityError(f"ONNX search embeddings differ from PyTorch by {worst:.3g} (allowed "
                          f"{MAX_ABS_DIFF:g}); refusing to package this export")
    if identical < MIN_TOP10_IDENTICAL:
        raise ParityError(f"top-10 items identical for {identical:.2%} of {len(ref)} held-out "
                          f"queries (need {MIN_TOP10_IDENTICAL:.0%}); refusing to package")
    return report


def _read_queries(checkpoint: Path) -> pd.DataFrame:
    path = checkpoint / "queries.parquet"
    try:
        queries = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read the held-out queries ({exc})") from exc
    missing = [c for c in _QUERY_COLUMNS if c not in queries]
    if missing:
        raise ExportError(f"{path}: expected columns {list(_QUERY_COLUMNS)}, missing {missing}")
    if not len(queries):
        raise ExportError(f"{path}: expected held-out queries, found none; parity and the "
                          "int8 check are measured on them")
    return queries.reset_index(drop=True)


def _check_items(items: pd.DataFrame) -> None:
    index = items["index"].to_numpy() if "index" in items else None
    if index is None or not np.array_equal(index, np.arange(1, len(items) + 1)):
        raise ExportError("expected the item table in index order 1..N (training's item_table)")


def _test_relevance(queries: pd.DataFrame,
                    items: pd.DataFrame) -> tuple[np.ndarray, list[set[int]]]:
    """Positions of the test queries in ``queries`` and their relevant item rows (0-based);
    queries with no relevant item in this catalogue are left out."""
    row_of = {item_id: row for row, item_id in enumerate(items["item_id"].astype(str))}
    test = np.flatnonzero(queries["split"].to_numpy() == "test")
    relevant = [{row_of[str(i)] for i in queries["relevant"].iat[q] if str(i) in row_of}
                for q in test]
    keep = [k for k, rel in enumerate(relevant) if rel]
    if not keep or 2 * len(keep) < len(test):
        # Ids from another catalogue: the search would be measured, and served, blind.
        raise ExportError(f"{len(keep)} of {len(test)} test queries have a relevant item in "
                          "this artifact's item table (need at least half); was the search "
                          "checkpoint trained on another dataset than the recommender?")
    return test[keep], [relevant[k] for k in keep]


def _retrieval_quality(queries: np.ndarray, relevant: Sequence[set[int]],
                       items: np.ndarray) -> dict[str, float]:
    """Recall@10 and NDCG@10 of the shipped query and item embeddings."""
    ranked = exact_search(queries, items, 10)[0].tolist()
    return {"search_onnx_test_recall@10": recall_at_k(ranked, relevant, 10),
            "search_onnx_test_ndcg@10": ndcg_at_k(ranked, relevant, 10),
            "search_onnx_test_queries": float(len(queries))}


def _checkpoint_metrics(meta: SearchMeta) -> dict[str, float]:
    names = {("finetuned", "recall@10"): "search_test_recall@10",
             ("finetuned", "ndcg@10"): "search_test_ndcg@10"}
    for method in ("bm25", "pretrained"):
        for metric in ("recall@10", "ndcg@10"):
            names[(method, metric)] = f"search_{method}_{metric}"
    return {name: meta.test_metrics[method][metric] for (method, metric), name in names.items()
            if metric in meta.test_metrics.get(method, {})}


def _try_int8(raw: Path, out: Path, fp32_scores: np.ndarray, held_out: Sequence[Batch],
              items: np.ndarray) -> float | None:
    """Keep ``out`` only if int8 queries against the fp32 item embeddings keep top-10."""
    quantize_int8(raw, out)
    int8_scores = _encode_all(_ort_encoder(out), held_out) @ items.T
    rows = [np.arange(len(fp32_scores))]
    try:
        return accept_quantized(fp32_scores.__getitem__, int8_scores.__getitem__, rows,
                                min_overlap=MIN_INT8_OVERLAP)
    except QuantizationRejected:
        out.unlink()
        return None


def export_search(checkpoint: Path, items: pd.DataFrame, staging: Path, scratch: Path, *,
                  quantize: bool = True) -> SearchExport:
    """Write ``staging/search/`` from a search checkpoint; returns io spec and metrics.

    ``items`` is the artifact's item table (index 1..N, item_id, title, category), in index
    order. Raises ParityError when the ONNX encoder disagrees with PyTorch, ExportError when
    the checkpoint is unusable; ``staging`` is then the caller's to discard.

    Example:
        >>> export_search(Path("runs/search"), item_table(data, items), staging,
        ...               scratch).io["dim"]  # doctest: +SKIP
        384
    """
    started = time.perf_counter()
    meta = SearchMeta.read(checkpoint)
    queries = _read_queries(checkpoint)
    _check_items(items)
    test_rows, test_relevant = _test_relevance(queries, items)
    hf_tokenizer, encoder, config = _load(checkpoint)
    query_tok = serving_tokenizer(hf_tokenizer, meta.max_query_tokens)
    item_tok = serving_tokenizer(hf_tokenizer, meta.max_item_tokens)
    out = staging / SEARCH_DIR
    out.mkdir(parents=True, exist_ok=True)

    raw = _export_onnx(encoder, query_tok, scratch / "search-raw.onnx")
    fused = optimize_onnx(raw, out / "encoder.onnx", config.num_attention_heads,
                          config.hidden_size)
    fp32 = _ort_encoder(out / "encoder.onnx")
    texts = [item_text(t, c) for t, c in zip(items["title"], items["category"], strict=True)]
    embeddings = _encode_items(fp32, item_tok, texts, config.hidden_size)

    query_texts = queries["query"].astype(str).tolist()
    probes = [_tokenize(query_tok, p) for p in _probe_texts(query_texts + texts[:200])]
    probes.append(_tokenize(item_tok, texts[:16]))  # item-length inputs, as embedded above
    held_out = list(_batches(query_tok, query_texts))
    torch_encode = _torch_encoder(encoder)
    held_fp32 = _encode_all(fp32, held_out)
    parity = check_search_parity([(torch_encode(*b), fp32(*b)) for b in probes],
                                 (_encode_all(torch_encode, held_out), held_fp32), embeddings)

    overlap = None
    if quantize:
        overlap = _try_int8(raw, out / "encoder.int8.onnx", held_fp32 @ embeddings.T, held_out,
                            embeddings)

    with atomic_writer(out / "item_embeddings.npy") as fh:
        np.save(fh, embeddings)
    atomic_write_bytes(out / "tokenizer.json", query_tok.to_str().encode())
    atomic_write_bytes(out / "queries.parquet", (checkpoint / "queries.parquet").read_bytes())

    metrics = _checkpoint_metrics(meta)
    metrics.update(_retrieval_quality(held_fp32[test_rows], test_relevant, embeddings))
    metrics.update({"search_parity_max_abs_diff": parity.max_abs_diff,
                    "search_parity_top10_identical": parity.top10_identical})
    if overlap is not None:
        metrics["search_int8_top10_overlap"] = overlap
    dim = int(config.hidden_size)
    io: dict[str, Any] = {
        "inputs": [{"name": name, "dtype": "int64", "shape": ["batch", "seq"]}
                   for name in INPUT_NAMES],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", dim]}],
        "dim": dim,
        "max_query_tokens": meta.max_query_tokens,
        "max_item_tokens": meta.max_item_tokens,
        "n_items": len(items),
        "normalized": True,
        "pooling": "mean",
        "item_text": ITEM_TEXT,
        "graph": f"{SEARCH_DIR}/encoder.onnx",
        "tokenizer": f"{SEARCH_DIR}/tokenizer.json",
        "item_embeddings": f"{SEARCH_DIR}/item_embeddings.npy",
        "queries": f"{SEARCH_DIR}/queries.parquet",
    }
    if overlap is not None:
        io["int8_graph"] = f"{SEARCH_DIR}/encoder.int8.onnx"
    return SearchExport(io, metrics, parity, overlap, fused, time.perf_counter() - started)
