"""Offline lever: blend the trained transformer's scores with ``recency_transitions``.

For each checkpoint, the blend (normalisation and weight λ) is chosen on the VALIDATION
split by unfiltered NDCG@10, then scored once on the TEST split exactly as the training
pipeline does (leave-one-out, full ranking over all items, ties against the target, baselines
fitted on the training sequences), with the paired bootstrap of test NDCG@10 against both
parents. Prints Markdown tables to stdout.

    python -m bench.model_blend runs/figures/ckpt-42 runs/figures/ckpt-1 runs/figures/ckpt-2

Normalisations (``m``: transformer logits, ``t``: recency-transitions scores, per user):

* ``z``:       z(m) + λ·z(t), each z-scored over the catalog;
* ``logp``:    log_softmax(m) + λ·log1p(t);
* ``mixture``: log((1 − λ)·softmax(m) + λ·t / Σt), a mixture of two distributions.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.baselines import recency_transitions
from training.checkpoint import load_checkpoint
from training.metrics import ndcg_per_user, summarize, target_ranks
from training.stats import PairedBootstrap, paired_bootstrap
from training.train import torch_scorer

Blend = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-12)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _mixture(m: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
    p = (1.0 - lam) * np.exp(_log_softmax(m)) + lam * t / t.sum(axis=1, keepdims=True)
    return np.log(p)


BLENDS: dict[str, tuple[Blend, tuple[float, ...]]] = {
    "z": (lambda m, t, lam: _z(m) + lam * _z(t),
          (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)),
    "logp": (lambda m, t, lam: _log_softmax(m) + lam * np.log1p(t),
             (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)),
    "mixture": (_mixture, (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)),
}


@dataclass(frozen=True)
class SeedResult:
    """One checkpoint: the validation choice and the test figures of all three scorers."""

    name: str
    norm: str
    lam: float
    valid_ndcg: dict[str, float]
    test: dict[str, tuple[float, float]]
    vs_rt: PairedBootstrap
    vs_model: PairedBootstrap
    grid: dict[tuple[str, float], float]
    seconds: float


def _scores(scorer: Callable[[Sequence[np.ndarray]], np.ndarray],
            histories: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
    return np.concatenate([np.asarray(scorer(histories[i:i + batch]), dtype=np.float64)
                           for i in range(0, len(histories), batch)])


def measure(directory: Path, resamples: int = 2000) -> SeedResult:
    """Choose the blend on validation, score it on test, bootstrap it against both parents."""
    started = time.perf_counter()
    ckpt = load_checkpoint(directory)
    data = ckpt.data
    model_scorer = torch_scorer(ckpt.model)
    rt_scorer = recency_transitions(data.train_sequences(), data.n_items)
    splits = {}
    for split in ("valid", "test"):
        hist, tgt = data.split(split)
        splits[split] = (_scores(model_scorer, hist), _scores(rt_scorer, hist), tgt)

    m, t, tgt = splits["valid"]
    grid = {(norm, lam): float(ndcg_per_user(target_ranks(blend(m, t, lam), tgt)).mean())
            for norm, (blend, lams) in BLENDS.items() for lam in lams}
    norm, lam = max(grid, key=grid.__getitem__)
    valid = {"sasrec": float(ndcg_per_user(target_ranks(m, tgt)).mean()),
             "recency_transitions": float(ndcg_per_user(target_ranks(t, tgt)).mean()),
             "blend": grid[norm, lam]}

    m, t, tgt = splits["test"]
    ranks = {"sasrec": target_ranks(m, tgt), "recency_transitions": target_ranks(t, tgt),
             "blend": target_ranks(BLENDS[norm][0](m, t, lam), tgt)}
    test = {}
    for name, r in ranks.items():
        s = summarize(r)
        test[name] = (s.hr, s.ndcg)
    per_user = {name: ndcg_per_user(r) for name, r in ranks.items()}
    vs_rt = paired_bootstrap(per_user["blend"], per_user["recency_transitions"], resamples)
    vs_model = paired_bootstrap(per_user["blend"], per_user["sasrec"], resamples)
    seed = ckpt.meta.get("config", {}).get("train", {}).get("seed", directory.name)
    return SeedResult(f"seed {seed}", norm, lam, valid, test, vs_rt, vs_model, grid,
                      time.perf_counter() - started)


def _ci(b: PairedBootstrap) -> str:
    return f"{b.mean_diff:+.4f} [{b.low:+.4f}, {b.high:+.4f}]"


def render(results: Sequence[SeedResult], show_grid: bool = False) -> str:
    """The Markdown report: per checkpoint, mean ± sd over checkpoints, optional grid."""
    header = ("| run | blend (valid-chosen) | valid NDCG@10 sasrec / rt / blend | "
              "test HR@10 sasrec / rt / blend | test NDCG@10 sasrec / rt / blend | "
              "blend − rt NDCG@10 (95% CI) | blend − sasrec NDCG@10 (95% CI) | beats rt |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    names = ("sasrec", "recency_transitions", "blend")
    for r in results:
        lines.append(
            f"| {r.name} | {r.norm}, λ={r.lam:g} | "
            + " / ".join(f"{r.valid_ndcg[n]:.4f}" for n in names) + " | "
            + " / ".join(f"{r.test[n][0]:.4f}" for n in names) + " | "
            + " / ".join(f"{r.test[n][1]:.4f}" for n in names) + " | "
            + f"{_ci(r.vs_rt)} | {_ci(r.vs_model)} | {'yes' if r.vs_rt.beats else 'no'} |")
    if len(results) > 1:
        def spread(values: list[float]) -> str:
            return f"{np.mean(values):.4f}±{np.std(values, ddof=1):.4f}"

        cells = [" / ".join(spread([r.test[n][i] for r in results]) for n in names)
                 for i in (0, 1)]
        diffs = [spread([getattr(r, k).mean_diff for r in results]) for k in ("vs_rt", "vs_model")]
        lines.append(f"| mean ± sd (n={len(results)}) | | | {cells[0]} | {cells[1]} | "
                     f"{diffs[0]} | {diffs[1]} | "
                     f"{sum(r.vs_rt.beats for r in results)}/{len(results)} |")
    lines.append("")
    lines.append(f"Paired bootstrap over {results[0].vs_rt.users} test users, "
                 f"{results[0].vs_rt.resamples:,} resamples; per-run seconds: "
                 + ", ".join(f"{r.seconds:.1f}" for r in results) + ".")
    if show_grid:
        keys = list(results[0].grid)
        lines += ["", "Validation NDCG@10 by normalisation and λ:", "",
                  "| normalisation | λ | " + " | ".join(r.name for r in results) + " |",
                  "|---|---|" + "---|" * len(results)]
        lines += [f"| {norm} | {lam:g} | " + " | ".join(f"{r.grid[norm, lam]:.4f}"
                                                       for r in results) + " |"
                  for norm, lam in keys]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.model_blend",
        description="Blend a checkpoint's transformer with recency_transitions: λ chosen on "
                    "validation NDCG@10, reported on test, paired bootstrap vs both parents.")
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint directories")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--grid", action="store_true", help="also print the validation grid")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(render([measure(c, args.resamples) for c in args.checkpoints], args.grid))


if __name__ == "__main__":
    main()
