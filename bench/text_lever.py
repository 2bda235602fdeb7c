"""Offline lever: item text through the search encoder, in the recommender (issue 10).

Compares, seed by seed, a checkpoint trained with ``--item-text init|side`` against the plain
transformer of the same seed and against recency-weighted transitions, on the TEST split
exactly as the training pipeline scores it (leave-one-out, full ranking over all items),
with the paired bootstrap of per-user NDCG@10. Prints a Markdown table to stdout.

    python -m bench.text_lever --seeds 42 1 2 --variant 'runs/text/side-{seed}' \\
        --baseline 'runs/figures/ckpt-{seed}'

``--train side`` first trains the missing variant checkpoints, one after another
(``python -m training train --item-text side``, the same time cap for every seed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.baselines import recency_transitions
from training.checkpoint import Checkpoint, load_checkpoint
from training.metrics import evaluate
from training.stats import PairedBootstrap, paired_bootstrap
from training.train import torch_scorer

NAMES = ("text", "sasrec", "recency_transitions")


@dataclass(frozen=True)
class SeedResult:
    """One seed: test HR@10/NDCG@10 of the three scorers, both paired bootstraps, training."""

    seed: str
    mode: str
    test: dict[str, tuple[float, float]]
    vs_model: PairedBootstrap
    vs_rt: PairedBootstrap
    training: dict[str, dict[str, Any]]
    seconds: float


def _same_data(a: Checkpoint, b: Checkpoint) -> bool:
    return (a.data.item_ids == b.data.item_ids and len(a.data.sequences) == len(b.data.sequences)
            and all(np.array_equal(x, y) for x, y in zip(a.data.sequences, b.data.sequences,
                                                         strict=True)))


def _train_summary(ckpt: Checkpoint) -> dict[str, Any]:
    train = ckpt.meta["metrics"]["train"]
    return {k: train[k] for k in ("best_epoch", "epochs_run", "seconds")}


def measure(variant_dir: Path, baseline_dir: Path, resamples: int = 2000) -> SeedResult:
    """Score both checkpoints and recency transitions on test; bootstrap the variant."""
    started = time.perf_counter()
    variant, baseline = load_checkpoint(variant_dir), load_checkpoint(baseline_dir)
    if not _same_data(variant, baseline):
        raise SystemExit(f"{variant_dir} and {baseline_dir} were trained on different data")
    data = variant.data
    hist, tgt = data.split("test")
    results = {"text": evaluate(torch_scorer(variant.model), hist, tgt),
               "sasrec": evaluate(torch_scorer(baseline.model), hist, tgt),
               "recency_transitions": evaluate(
                   recency_transitions(data.train_sequences(), data.n_items), hist, tgt)}
    test = {n: (r.unfiltered.hr, r.unfiltered.ndcg) for n, r in results.items()}
    ours = results["text"].user_ndcg()
    seed = str(variant.meta["config"]["train"]["seed"])
    return SeedResult(
        seed, str(variant.meta["config"]["model"].get("item_text", "none")), test,
        paired_bootstrap(ours, results["sasrec"].user_ndcg(), resamples),
        paired_bootstrap(ours, results["recency_transitions"].user_ndcg(), resamples),
        {"text": _train_summary(variant), "sasrec": _train_summary(baseline)},
        time.perf_counter() - started)


def _ci(b: PairedBootstrap) -> str:
    return f"{b.mean_diff:+.4f} [{b.low:+.4f}, {b.high:+.4f}]"


def _spread(values: Sequence[float]) -> str:
    return f"{np.mean(values):.4f}±{np.std(values, ddof=1):.4f}"


def render(results: Sequence[SeedResult]) -> str:
    """The Markdown table: per seed, then mean ± sd over seeds (sample sd)."""
    mode = results[0].mode
    lines = [(f"| seed | test HR@10 {mode} / sasrec / rt | test NDCG@10 {mode} / sasrec / rt | "
             f"{mode} − sasrec NDCG@10 (95% CI) | {mode} − rt NDCG@10 (95% CI) | "
             f"best / run epochs, s: {mode} | sasrec |"),
             "|---|---|---|---|---|---|---|"]
    for r in results:
        t, b = r.training["text"], r.training["sasrec"]
        lines.append(
            f"| {r.seed} | " + " / ".join(f"{r.test[n][0]:.4f}" for n in NAMES) + " | "
            + " / ".join(f"{r.test[n][1]:.4f}" for n in NAMES) + " | "
            + f"{_ci(r.vs_model)} | {_ci(r.vs_rt)} | "
            + f"{t['best_epoch']}/{t['epochs_run']}, {t['seconds']:.0f} | "
            + f"{b['best_epoch']}/{b['epochs_run']}, {b['seconds']:.0f} |")
    if len(results) > 1:
        cells = [" / ".join(_spread([r.test[n][i] for r in results]) for n in NAMES)
                 for i in (0, 1)]
        lines.append(
            f"| mean ± sd (n={len(results)}) | {cells[0]} | {cells[1]} | "
            f"{_spread([r.vs_model.mean_diff for r in results])}, above 0 in "
            f"{sum(r.vs_model.beats for r in results)}/{len(results)} | "
            f"{_spread([r.vs_rt.mean_diff for r in results])}, above 0 in "
            f"{sum(r.vs_rt.beats for r in results)}/{len(results)} | | |")
    lines += ["", (f"Paired bootstrap of per-user NDCG@10 over {results[0].vs_rt.users} test "
                  f"users, {results[0].vs_rt.resamples:,} resamples; rt = recency_transitions.")]
    return "\n".join(lines)


def train_command(seed: int, out: Path, mode: str, max_time_s: float,
                  text_encoder: Path | None) -> list[str]:
    """The ``python -m training train`` command line for one variant checkpoint."""
    cmd = [sys.executable, "-m", "training", "train", "--seed", str(seed), "--out", str(out),
           "--no-progress", "--item-text", mode, "--max-time-s", str(max_time_s)]
    return cmd + (["--text-encoder", str(text_encoder)] if text_encoder else [])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.text_lever",
        description="Item text in the recommender vs the plain transformer and recency "
                    "transitions, per seed, with paired bootstraps.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument("--variant", default="runs/text/side-{seed}",
                        help="variant checkpoint directory pattern ({seed} is replaced)")
    parser.add_argument("--baseline", default="runs/figures/ckpt-{seed}",
                        help="plain-transformer checkpoint directory pattern")
    parser.add_argument("--train", choices=("init", "side"), default=None,
                        help="first train missing variant checkpoints in this mode")
    parser.add_argument("--max-time-s", type=float, default=540.0, help="training time cap")
    parser.add_argument("--text-encoder", type=Path, default=None,
                        help="search checkpoint for the item text (default: pretrained MiniLM)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    pairs = [(seed, Path(args.variant.format(seed=seed)), Path(args.baseline.format(seed=seed)))
             for seed in args.seeds]
    if args.train:
        for seed, variant, _ in pairs:
            if not (variant / "meta.json").exists():
                out = variant.with_suffix(".json")
                with out.open("w") as stdout:
                    subprocess.run(train_command(seed, variant, args.train, args.max_time_s,
                                                 args.text_encoder), stdout=stdout, check=True)
    torch.set_num_threads(args.threads)
    print(render([measure(v, b, args.resamples) for _, v, b in pairs]))


if __name__ == "__main__":
    main()
