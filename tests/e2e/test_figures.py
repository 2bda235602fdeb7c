"""README figures from a report: rendered numbers, idempotent rewrite, the module entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recdrill.figures import FiguresError, model_markdown, render_figures, replace_section

ROOT = Path(__file__).resolve().parents[2]

README = """# project

Intro text that must survive.

## Measured here

Hand-written lead-in.

<!-- figures:model:begin -->
| stale | table |
<!-- figures:model:end -->

Hand-written tail, with `code` and a trailing newline.
"""


def _metrics(hr: float, ndcg: float) -> dict[str, float]:
    return {"hr@10": hr, "ndcg@10": ndcg, "mrr": ndcg / 2, "filtered_hr@10": hr + 0.05,
            "filtered_ndcg@10": ndcg + 0.03, "filtered_mrr": ndcg}


def _run(seed: int, ours: float, beats: bool) -> dict[str, Any]:
    return {
        "dataset": "ml-100k", "n_users": 943, "n_items": 1682, "n_interactions": 100000,
        "train": {"seed": seed, "seconds": 101.5, "best_epoch": 18, "epochs_run": 30},
        "machine": {"cpu": "Test CPU 9000", "cores": 2, "python": "3.11.7", "torch": "2.5.1",
                    "date": "2025-01-02T03:04:05Z", "commit": "0123456789abcdef", "dirty": False},
        "best_baseline": "recency_transitions",
        "vs_baselines": {"recency_transitions": {
            "mean_diff": ours - 0.0663, "ci_low": ours - 0.0763, "ci_high": ours - 0.0563,
            "level": 0.95, "resamples": 2000, "seed": 0, "users": 943, "beats": beats}},
        "test": {"popularity": _metrics(0.0498, 0.0220), "sasrec": _metrics(0.1198, ours),
                 "recency_transitions": _metrics(0.1315, 0.0663)},
    }


def test_table_carries_the_reports_numbers_in_order() -> None:
    md = model_markdown(_run(42, 0.0586, False))
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| SASRec transformer") and "| 0.1198 | 0.0586 | 0.1698 | 0.0886 |" in rows[1]
    assert rows[2].startswith("| recency-weighted transitions") and "0.0663" in rows[2]
    assert rows[3] == "| popularity | 0.0498 | 0.0220 | 0.0998 | 0.0520 |"
    assert "MovieLens-100k" in md and "1,682 items" in md and "943 test users" in md
    assert "Test CPU 9000, 2 cores" in md and "torch 2.5.1" in md and "commit 0123456789" in md
    assert "sasrec − recency_transitions, NDCG@10: -0.0077 (95% CI -0.0177 to +0.0023" in md
    assert ": not ahead" in md


def test_seed_spread_line_over_several_runs() -> None:
    runs = [_run(42, 0.06, False), _run(1, 0.07, True), _run(2, 0.08, True)]
    md = model_markdown(runs[0], runs)
    assert "Over seeds 42/1/2 the transformer's NDCG@10 was 0.0600/0.0700/0.0800" in md
    assert "(mean 0.0700, sd 0.0100)" in md
    assert "Minus recency_transitions (the same every seed): -0.0063/+0.0037/+0.0137" in md
    assert "above zero in 2 of 3 seeds" in md


def test_rewrite_is_idempotent_and_leaves_the_rest_intact(tmp_path: Path) -> None:
    report, readme = tmp_path / "report.json", tmp_path / "README.md"
    report.write_text(json.dumps({"beats_baselines": False,
                                  "train_and_evaluate": _run(42, 0.0586, False)}))
    readme.write_text(README)
    md = render_figures([report], readme)
    once = readme.read_text()
    assert md in once and "| stale | table |" not in once
    before, after = README.split("| stale | table |\n")
    assert once.startswith(before) and once.endswith(after)
    render_figures([report], readme)
    assert readme.read_text() == once


def test_missing_or_doubled_markers_are_refused() -> None:
    with pytest.raises(FiguresError, match="exactly one"):
        replace_section("no markers here", "x")
    with pytest.raises(FiguresError, match="before"):
        replace_section("<!-- figures:model:end -->\n<!-- figures:model:begin -->", "x")


def test_module_entry_prints_markdown_and_rewrites(tmp_path: Path) -> None:
    report, readme = tmp_path / "train.json", tmp_path / "README.md"
    report.write_text(json.dumps({"checkpoint": "c", **_run(42, 0.0586, False)}))
    readme.write_text(README)
    proc = subprocess.run([sys.executable, "-m", "recdrill.figures", str(report), "--readme",
                           str(readme)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| 0.1198 | 0.0586 |" in proc.stdout and proc.stdout.strip() in readme.read_text()
    bad = subprocess.run([sys.executable, "-m", "recdrill.figures", str(readme)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "README.md" in bad.stderr


def test_readme_model_figures_are_the_committed_runs_rendered() -> None:
    """The README's model table is generated from docs/figures/*.json, never typed by hand."""
    runs = [ROOT / "docs/figures" / f"train-seed{s}.json" for s in (42, 1, 2)]
    body = render_figures(runs)
    text = (ROOT / "README.md").read_text()
    assert replace_section(text, body) == text, "README model section drifted: run `recdrill " \
        "figures docs/figures/train-seed42.json docs/figures/train-seed1.json " \
        "docs/figures/train-seed2.json --readme README.md`"
