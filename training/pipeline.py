"""One training run: load → clean → split → baselines → fine-tune → evaluate → compare →
checkpoint."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from durable.machine import cpu_model
from security import audit
from security.errors import SecurityError
from training.baselines import fit_baselines
from training.checkpoint import item_table, save_checkpoint
from training.clean import CleanConfig, SequenceData, clean_interactions, leave_one_out
from training.errors import ConfigError
from training.fetch import fetch_movielens_100k
from training.loaders import ColumnMapping, RawDataset, load_any
from training.metrics import EvalResult, evaluate
from training.model import ModelConfig
from training.protection import DataProtection, Exclusion, exclude_forgotten
from training.stats import PairedBootstrap, compare_to_baselines, comparison_sentence
from training.text_features import MAX_TEXT_TOKENS, item_text_matrix, item_texts
from training.train import (
    TrainConfig,
    config_dict,
    seed_everything,
    torch_scorer,
    train_recommender,
)

MODEL_NAME = "sasrec"


@dataclass(frozen=True)
class RunReport:
    """Test-split results of the transformer and every baseline, how sure the comparison is,
    and where it ran.

    ``comparisons`` holds, per baseline, the paired bootstrap of the transformer's per-user
    NDCG@10 minus the baseline's (see :func:`training.stats.compare_to_baselines`).
    """

    dataset: str
    n_users: int
    n_items: int
    n_interactions: int
    results: dict[str, EvalResult]
    train_summary: dict[str, Any]
    comparisons: dict[str, PairedBootstrap] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    #: Users (and their events) left out because they asked to be forgotten.
    forgotten: Exclusion = field(default_factory=Exclusion)
    #: Raw files decrypted in memory, and whether the checkpoint's user ids are sealed.
    sealed_inputs: int = 0
    sealed_checkpoint: bool = False

    def best_baseline(self) -> str | None:
        """The baseline with the highest mean NDCG@10 (unfiltered), if any."""
        others = {n: r.unfiltered.ndcg for n, r in self.results.items() if n != MODEL_NAME}
        return max(others, key=others.__getitem__) if others else None

    def beats_baselines(self) -> bool:
        """True when the transformer's NDCG@10 lead over every baseline has a 95% bootstrap
        interval above zero (not merely a higher mean)."""
        return bool(self.comparisons) and all(c.beats for c in self.comparisons.values())

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "n_users": self.n_users, "n_items": self.n_items,
                "n_interactions": self.n_interactions, "train": self.train_summary,
                "machine": self.machine, "beats_baselines": self.beats_baselines(),
                "best_baseline": self.best_baseline(),
                "vs_baselines": {n: c.as_dict() for n, c in self.comparisons.items()},
                "test": {name: r.as_dict() for name, r in self.results.items()},
                "privacy": {"forgotten_users_dropped": self.forgotten.users,
                            "forgotten_events_dropped": self.forgotten.events,
                            "sealed_inputs": self.sealed_inputs,
                            "sealed_checkpoint": self.sealed_checkpoint}}


def run_provenance() -> dict[str, Any]:
    """The machine and code a run came from: CPU, cores, Python, torch, UTC date, git commit."""
    import torch

    cpu = cpu_model()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **_git_commit(Path(__file__).resolve().parents[1])}


def _git_commit(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def load_source(source: str, mapping: ColumnMapping | None = None,
                data_key: bytes | None = None) -> RawDataset:
    """``ml-100k`` (fetched from the RecBole wheel) or a path to atomic / CSV / Parquet data;
    sealed files are decrypted in memory (``data_key``, default: the data key file)."""
    if source == "ml-100k":
        return load_any(fetch_movielens_100k(), data_key=data_key)
    return load_any(Path(source), mapping, data_key=data_key)


def load_protected(source: str, mapping: ColumnMapping | None,
                   protection: DataProtection) -> tuple[RawDataset, Exclusion]:
    """The raw data for training: sealed files opened in memory (each such read audited as
    ``data.read``), forgotten users' events left out."""
    # An explicit key is read now; the default one only if a sealed file is met.
    raw = load_source(source, mapping,
                      protection.read_data_key() if protection.data_key is not None else None)
    if raw.sealed:
        try:
            audit.record("data.read", role="operator", target=source,
                         details={"purpose": "training", "files": list(raw.sealed)})
        except (OSError, SecurityError) as exc:  # an unaudited read of sealed data goes no further
            raise ConfigError(f"{source}: sealed data was opened but the audit log refused "
                              f"the entry ({exc}); repair the audit log, then train again"
                              ) from exc
    forgotten, pseudonymiser = protection.forgotten()
    if pseudonymiser is None:
        return raw, Exclusion()
    kept, excluded = exclude_forgotten(raw.interactions, forgotten, pseudonymiser)
    return replace(raw, interactions=kept), excluded


def run_training(source: str, out_dir: Path, model_config: ModelConfig | None = None,
                 train_config: TrainConfig | None = None,
                 clean_config: CleanConfig | None = None,
                 mapping: ColumnMapping | None = None, progress: bool = True,
                 text_encoder: Path | None = None,
                 protection: DataProtection | None = None) -> RunReport:
    """Train the recommender on ``source``, compare with baselines, write a checkpoint.

    Configs left ``None`` take their defaults. With ``model_config.item_text`` set, item
    titles and categories are encoded by ``text_encoder`` (a search checkpoint directory;
    None: the pretrained all-MiniLM-L6-v2). ``protection`` (default: the default key and
    register paths) says how user data is handled: see ``training.protection``.
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    clean_config = clean_config or CleanConfig()
    protection = protection or DataProtection()
    raw, excluded = load_protected(source, mapping, protection)
    seal = (protection.seal_checkpoint if protection.seal_checkpoint is not None
            else bool(raw.sealed))
    data: SequenceData = leave_one_out(clean_interactions(raw.interactions, clean_config))
    text: np.ndarray | None = None
    text_meta: dict[str, Any] = {}
    if model_config.item_text != "none":
        from training.search_model import BASE_NAME

        seed_everything(train_config.seed, train_config.threads)
        text = item_text_matrix(item_texts(item_table(data, raw.items)), text_encoder)
        text_meta = {"item_text": {"encoder": str(text_encoder) if text_encoder else BASE_NAME,
                                   "max_tokens": MAX_TEXT_TOKENS}}
    trained = train_recommender(data, model_config, train_config, progress=progress,
                                item_text=text)
    histories, targets = data.split("test")
    results = {MODEL_NAME: evaluate(torch_scorer(trained.model), histories, targets)}
    for name, scorer in fit_baselines(data.train_sequences(), data.n_items).items():
        results[name] = evaluate(scorer, histories, targets)
    report = RunReport(source, data.n_users, data.n_items, sum(len(s) for s in data.sequences),
                       results, {**trained.summary(), "seed": train_config.seed},
                       compare_to_baselines(results, MODEL_NAME), run_provenance(),
                       excluded, len(raw.sealed), seal)
    meta = {"config": config_dict(model_config, train_config), "clean": asdict(clean_config),
            "source": source, "metrics": report.as_dict(), **text_meta}
    save_checkpoint(out_dir, trained.model, data, raw.items, meta,
                    seal_key=protection.read_data_key(create=True) if seal else None)
    return report


def render_table(report: RunReport, console: Console | None = None) -> None:
    """Print the metrics table: full ranking over all items, unfiltered and seen-filtered."""
    table = Table(title=f"{report.dataset}: leave-one-out test, full ranking over "
                        f"{report.n_items} items, {report.n_users} users")
    for col in ("model", "HR@10", "NDCG@10", "MRR", "HR@10 seen-filtered",
                "NDCG@10 seen-filtered", "MRR seen-filtered"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, res in report.results.items():
        u, f = res.unfiltered, res.seen_filtered
        table.add_row(name, *(f"{v:.4f}" for v in (u.hr, u.ndcg, u.mrr, f.hr, f.ndcg, f.mrr)))
    console = console or Console(stderr=True, width=130)
    console.print(table)
    if report.forgotten.users:
        console.print(f"left out {report.forgotten.users} user(s) in the forget register "
                      f"({report.forgotten.events} events)", highlight=False)
    best = report.best_baseline()
    if best is not None and best in report.comparisons:
        console.print(comparison_sentence(MODEL_NAME, best, report.comparisons[best].as_dict()),
                      highlight=False, soft_wrap=True)
