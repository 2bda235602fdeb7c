"""Fine-tune the sequential recommender: full-softmax cross-entropy, AdamW, early stopping.

Deterministic under a seed (torch, numpy and the shuffling generator are all seeded, and
torch runs deterministic kernels).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch.nn import functional as F

from training.clean import SequenceData
from training.errors import ConfigError
from training.metrics import EvalResult, Scorer, evaluate
from training.model import ModelConfig, SASRec
from training.pretrain import MAX_PRETRAIN_ITEMS, ppmi_embeddings
from training.sequences import left_pad, next_item_windows
from training.text_features import mixed_init


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Example:
        >>> TrainConfig(max_epochs=3).patience
        12
    """

    max_epochs: int = 200
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.01
    patience: int = 12
    seed: int = 42
    threads: int = 1
    max_time_s: float = 540.0

    def __post_init__(self) -> None:
        if self.max_epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ConfigError("max_epochs, batch_size and patience must all be >= 1")


@dataclass
class TrainResult:
    """The best model (by validation NDCG@10) and how training went."""

    model: SASRec
    best_epoch: int
    best_valid: EvalResult
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {"best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
                "seconds": round(self.seconds, 1), "best_valid": self.best_valid.as_dict()}


def seed_everything(seed: int, threads: int) -> None:
    """Seed every generator and pin the thread count so runs repeat exactly."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def torch_scorer(model: SASRec) -> Scorer:
    """Wrap a model as a numpy scorer over raw histories."""

    def score(histories: Sequence[np.ndarray]) -> np.ndarray:
        batch = torch.from_numpy(left_pad(histories, model.config.max_seq_len))
        with torch.no_grad():
            return model(batch).numpy()

    return score


def length_batches(lengths: np.ndarray, batch_size: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of windows of similar length, in random order (less padding to compute).

    Example:
        >>> sorted(len(b) for b in length_batches(np.array([1, 5, 2, 6]), 2, np.random.default_rng(0)))
        [2, 2]
    """
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _epoch(model: SASRec, optimizer: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray,
           batch_size: int, rng: np.random.Generator) -> float:
    model.train()
    lengths = (x > 0).sum(axis=1)
    total, batches = 0.0, 0
    for idx in length_batches(lengths, batch_size, rng):
        # Left padding: dropping all-pad leading columns changes nothing but the cost.
        width = max(int(lengths[idx].max()), 1)
        inputs = torch.from_numpy(x[idx, -width:])
        targets = torch.from_numpy(y[idx, -width:])
        logits = model.item_logits(model.hidden_states(inputs))
        # Target index 0 is padding; shifting by one makes it -1, which the loss ignores.
        loss = F.cross_entropy(logits.reshape(-1, model.n_items), (targets - 1).reshape(-1),
                               ignore_index=-1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    model.eval()
    return total / max(batches, 1)


def _initialise(model: SASRec, data: SequenceData, model_config: ModelConfig,
                item_text: np.ndarray | None) -> None:
    """PPMI start, and the item text in the start or the side table, as configured."""
    if model_config.item_text != "none":
        expected = (data.n_items, model_config.text_dim)
        if item_text is None or item_text.shape != expected:
            found = None if item_text is None else item_text.shape
            raise ConfigError(f"item_text={model_config.item_text!r} needs an item-text matrix "
                              f"of shape {expected}, found {found}; see training.text_features")
    ppmi = None
    if model_config.pretrain and data.n_items <= MAX_PRETRAIN_ITEMS:
        ppmi = ppmi_embeddings(data.train_sequences(), data.n_items, model_config.hidden_size)
    if model_config.item_text == "init" and item_text is not None:
        model.load_item_embeddings(torch.from_numpy(
            mixed_init(item_text, ppmi, model_config.hidden_size)))
    elif ppmi is not None:
        model.load_item_embeddings(torch.from_numpy(ppmi))
    if model_config.item_text == "side" and item_text is not None:
        model.load_item_text(torch.from_numpy(np.asarray(item_text, dtype=np.float32)))


def train_recommender(data: SequenceData, model_config: ModelConfig = ModelConfig(),
                      config: TrainConfig = TrainConfig(), progress: bool = True,
                      on_epoch: Callable[[dict[str, float]], None] | None = None,
                      item_text: np.ndarray | None = None) -> TrainResult:
    """Train on the training part, early-stop on validation NDCG@10 (unfiltered).

    ``item_text`` (``[n_items, d]``, see :mod:`training.text_features`) is required when
    ``model_config.item_text`` is not ``"none"``, and ignored otherwise.
    """
    seed_everything(config.seed, config.threads)
    rng = np.random.default_rng(config.seed)
    model = SASRec(data.n_items, model_config)
    _initialise(model, data, model_config, item_text)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    x, y = next_item_windows(data.train_sequences(), model_config.max_seq_len)
    valid_hist, valid_tgt = data.split("valid")
    best_state, best_ndcg, best_epoch, best_eval = None, -1.0, 0, None
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    columns = (TextColumn("[bold]train[/]"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("train", total=config.max_epochs, status="")
        epoch = 0
        for epoch in range(1, config.max_epochs + 1):
            loss = _epoch(model, optimizer, x, y, config.batch_size, rng)
            result = evaluate(torch_scorer(model), valid_hist, valid_tgt)
            ndcg = result.unfiltered.ndcg
            history.append({"epoch": epoch, "loss": loss, **result.as_dict()})
            if on_epoch is not None:
                on_epoch(history[-1])
            if ndcg > best_ndcg:
                best_state, best_ndcg, best_epoch, best_eval = (
                    copy.deepcopy(model.state_dict()), ndcg, epoch, result)
            bar.update(task, advance=1, status=f"loss {loss:.3f} valid ndcg@10 {ndcg:.4f} "
                                               f"(best {best_ndcg:.4f} @ {best_epoch})")
            out_of_time = time.perf_counter() - started > config.max_time_s
            if epoch - best_epoch >= config.patience or out_of_time:
                break
    assert best_state is not None and best_eval is not None
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, best_epoch, best_eval, epoch, time.perf_counter() - started, history)


def config_dict(model_config: ModelConfig, config: TrainConfig) -> dict[str, object]:
    """Both configs as one JSON-able dict (recorded in the checkpoint and the manifest)."""
    return {"model": model_config.to_dict(), "train": asdict(config)}
