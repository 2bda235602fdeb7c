from __future__ import annotations

import io
import json

import numpy as np
from rich.console import Console

from training.metrics import EvalResult, evaluate
from training.pipeline import MODEL_NAME, RunReport, render_table, run_provenance
from training.stats import compare_to_baselines


def _result(hits: np.ndarray) -> EvalResult:
    """Users whose target the scorer ranks first (hit) or last (miss), over 5 items."""
    targets = np.ones(len(hits), dtype=np.int64)
    scores = np.where(hits[:, None], np.eye(5)[0], 1.0 - np.eye(5)[0])
    return evaluate(lambda h: scores[: len(h)], [np.array([2])] * len(hits), targets,
                    batch_size=len(hits))


def _report(ours: np.ndarray, **baselines: np.ndarray) -> RunReport:
    results = {MODEL_NAME: _result(ours), **{n: _result(h) for n, h in baselines.items()}}
    return RunReport("toy", len(ours), 5, 2 * len(ours), results, {"seed": 1},
                     compare_to_baselines(results, MODEL_NAME, resamples=500), {"cores": 1})


def test_a_higher_mean_within_the_noise_is_not_a_win() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.3
    ours = base.copy()
    ours[:4] = True  # one percent more hits, on a 400-user test set
    report = _report(ours, knn=base, pop=np.zeros(400, dtype=bool))
    assert report.results[MODEL_NAME].unfiltered.ndcg > report.results["knn"].unfiltered.ndcg
    assert report.best_baseline() == "knn"
    assert not report.comparisons["knn"].beats and report.comparisons["pop"].beats
    assert report.beats_baselines() is False


def test_a_clear_lead_over_every_baseline_is_a_win_and_is_reported() -> None:
    rng = np.random.default_rng(1)
    report = _report(rng.random(400) < 0.6, knn=rng.random(400) < 0.2)
    assert report.beats_baselines() is True
    doc = json.loads(json.dumps(report.as_dict()))
    assert doc["best_baseline"] == "knn" and doc["vs_baselines"]["knn"]["beats"] is True
    assert doc["vs_baselines"]["knn"]["ci_low"] > 0 and doc["train"]["seed"] == 1
    out = io.StringIO()
    render_table(report, Console(file=out, width=200))
    assert "sasrec − knn, NDCG@10:" in out.getvalue() and ": ahead" in out.getvalue()


def test_no_comparison_claims_nothing() -> None:
    report = RunReport("toy", 1, 5, 2, {MODEL_NAME: _result(np.array([True]))}, {})
    assert report.best_baseline() is None and report.beats_baselines() is False


def test_provenance_names_the_machine_and_code() -> None:
    machine = run_provenance()
    assert {"cpu", "cores", "python", "torch", "date", "commit", "dirty"} <= set(machine)
    assert machine["cores"] >= 1
