"""``python -m training``: fetch data, synthesise data, train the recommender.

Machine output (JSON) goes to stdout; tables, logs and progress go to stderr.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from training.clean import CleanConfig
from training.errors import TrainingError
from training.fetch import fetch_movielens_100k
from training.loaders import ColumnMapping
from training.model import ModelConfig
from training.pipeline import render_table, run_training
from training.train import TrainConfig

EXIT_OK, EXIT_DATA, EXIT_TARGET = 0, 2, 3


class ItemText(str, Enum):
    """``train --item-text``: how the recommender uses item text (``ModelConfig.item_text``)."""

    none = "none"
    init = "init"
    side = "side"

app = typer.Typer(add_completion=False, help="Data and training for recdrill.")


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(EXIT_DATA)


@app.command()
def fetch(cache: Path = typer.Option(None, envvar="RECDRILL_CACHE", help="Cache directory.")) -> None:
    """Fetch MovieLens-100k from the RecBole wheel into the cache; prints the directory."""
    try:
        typer.echo(json.dumps({"ml-100k": str(fetch_movielens_100k(cache))}))
    except TrainingError as exc:
        _fail(exc)


@app.command()
def synth(out: Path = typer.Option(..., help="Output directory."),
          items: int = typer.Option(10_000, help="Catalog size."),
          users: int = typer.Option(2_000, help="Number of users."),
          seed: int = typer.Option(0, help="Random seed.")) -> None:
    """Generate a synthetic e-commerce dataset (Parquet) into OUT."""
    from training.synthetic import SyntheticConfig, generate

    summary = generate(SyntheticConfig(n_items=items, n_users=users, seed=seed), out)
    typer.echo(json.dumps({"out": str(out), "events": summary.n_events, "items": summary.n_items,
                           "seconds": round(summary.seconds, 2)}))


@app.command()
def train(
    data: str = typer.Option("ml-100k", envvar="RECDRILL_DATA",
                             help="'ml-100k', a RecBole atomic dir, or a CSV/Parquet file/dir."),
    out: Path = typer.Option(Path("runs/checkpoint"), envvar="RECDRILL_TRAIN_OUT",
                             help="Checkpoint directory to write."),
    user_col: str = typer.Option("user_id", help="Source column holding user ids."),
    item_col: str = typer.Option("item_id", help="Source column holding item ids."),
    time_col: str = typer.Option("timestamp", help="Source column holding timestamps."),
    event_col: str = typer.Option(None, help="Source column holding event types, if any."),
    user_min: int = typer.Option(CleanConfig.user_min, help="k-core: min interactions per user."),
    item_min: int = typer.Option(CleanConfig.item_min, help="k-core: min interactions per item."),
    max_epochs: int = typer.Option(TrainConfig.max_epochs, help="Epoch cap."),
    max_time_s: float = typer.Option(TrainConfig.max_time_s, help="Training time cap, seconds."),
    seed: int = typer.Option(TrainConfig.seed, help="Random seed."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    item_text: ItemText = typer.Option(
        ItemText.none, envvar="RECDRILL_ITEM_TEXT",
        help="Item titles/genres through the text encoder: 'init' starts half the item "
             "embeddings from them, 'side' adds a frozen text table with a learned projection."),
    text_encoder: Path = typer.Option(
        None, envvar="RECDRILL_TEXT_ENCODER",
        help="Search checkpoint whose encoder embeds the item text (default: the pretrained "
             "all-MiniLM-L6-v2)."),
    data_key: Path = typer.Option(
        None, envvar="RECDRILL_DATA_KEY",
        help="AES-256-GCM key of sealed raw data (default: <key dir>/data.key); sealed files "
             "are decrypted in memory only."),
    seal: bool = typer.Option(
        None, "--seal/--no-seal", envvar="RECDRILL_SEAL_CHECKPOINT",
        help="Seal the checkpoint's user ids (sequences.npz) with the data key (default: "
             "when the raw data was sealed)."),
) -> None:
    """Train the transformer recommender and the baselines; print the metrics table.

    Users in the forget register (RECDRILL_FORGET_REGISTER, matched with the pseudonym key
    RECDRILL_PSEUDONYM_KEY) are left out; the report's ``privacy`` says how many."""
    from training.protection import DataProtection

    mapping = ColumnMapping(user_col, item_col, time_col, event_col)
    try:
        report = run_training(
            data, out, ModelConfig(item_text=item_text.value),
            TrainConfig(max_epochs=max_epochs, max_time_s=max_time_s, seed=seed),
            CleanConfig(user_min=user_min, item_min=item_min), mapping, progress=progress,
            text_encoder=text_encoder,
            protection=DataProtection(data_key=data_key, seal_checkpoint=seal))
    except TrainingError as exc:
        _fail(exc)
        return
    render_table(report)
    typer.echo(json.dumps({"checkpoint": str(out), **report.as_dict()}))
    if not report.beats_baselines():
        typer.echo("note: the transformer is not ahead of every baseline (paired bootstrap, "
                   "95% interval above zero); see vs_baselines", err=True)


@app.command()
def search(
    data: str = typer.Option("ml-100k", envvar="RECDRILL_SEARCH_DATA",
                             help="'ml-100k' or a directory written by `synth`."),
    out: Path = typer.Option(Path("runs/search"), envvar="RECDRILL_SEARCH_OUT",
                             help="Search checkpoint directory to write."),
    seed: int = typer.Option(42, envvar="RECDRILL_SEED",
                             help="Seeds the queries, the split and the fine-tuning."),
    max_time_s: float = typer.Option(300.0, envvar="RECDRILL_SEARCH_MAX_TIME_S",
                                     help="Time cap of the whole run, seconds: "
                                          "fine-tuning gets what evaluation leaves."),
    threads: int = typer.Option(1, envvar="RECDRILL_THREADS", help="torch threads."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Fine-tune the MiniLM search encoder; compare with BM25 and the pretrained encoder."""
    from training.search_model import FinetuneConfig
    from training.search_train import render_search_table, run_search

    try:
        config = FinetuneConfig(seed=seed, max_time_s=max_time_s, threads=threads)
        report = run_search(data, out, config, progress=progress)
    except TrainingError as exc:
        _fail(exc)
        return
    render_search_table(report)
    typer.echo(json.dumps({"checkpoint": str(out), **report.as_dict()}))
    if not report.beats_baselines():
        typer.echo("note: the fine-tuned encoder is not ahead of both baselines (paired "
                   "bootstrap, 95% interval above zero); see vs_baselines", err=True)


def main() -> None:
    """Console entry point."""
    app(prog_name="python -m training")


if __name__ == "__main__":
    main()
