"""A search-only fault shows in the verdict, as a user runs the drill: ``python -m drills run``
on an embedded cluster, plain HTTP with 30% searches; a validly signed version whose search
item embeddings are permuted is published and served everywhere mid-run. The recommender's
NDCG@10 holds; the search NDCG@10 SLO breaks, and the breach names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from drill_factory import DrillFiles, build_drill_files
from serving_factory import PRODUCTS, search_checkpoint

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
title: bad-search
description: A search-only regression, published and served everywhere at 8 s.
load: {rate_rps: 100, protocol: http, client: plain, duration_s: 24, search_share: 0.3}
method:
  - {fault: bad-search, at_s: 8, duration_s: 16, factor: 15}
steady_state_hypothesis:
  slos:
    - {kind: success_ratio, min: 0.99, phases: [baseline, faults]}
    - {kind: ndcg10, min_ratio: 0.8, phases: [faults]}
    - {kind: search_ndcg10, min_ratio: 0.9, phases: [faults]}
rollbacks: [restore-version]
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> DrillFiles:
    root = tmp_path_factory.mktemp("search-drill")
    return build_drill_files(root, n_items=len(PRODUCTS),
                             search=search_checkpoint(root / "search-checkpoint"))


def test_a_search_only_fault_breaks_only_the_search_slo(files: DrillFiles, tmp_path: Path) -> None:
    scenario = tmp_path / "bad-search.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "drills", "run", str(scenario), "--out", str(out),
           "--artifact", str(files.artifact), "--checkpoint", str(files.checkpoint),
           "--public-key", str(files.public_key), "--signing-key", str(files.private_key),
           "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
                          check=False)
    journal = json.loads((out / "journal.json").read_text())
    assert journal["status"] == "completed", (journal.get("error"), proc.stderr[-3000:])
    fault = journal["faults"][0]
    assert fault["error"] is None and fault["facts"]["served_everywhere"], fault
    verdicts = {(v["kind"], v["phase"]): v for v in journal["verdicts"]}
    assert verdicts[("success_ratio", "baseline")]["held"]
    assert verdicts[("success_ratio", "bad-search")]["held"]
    assert verdicts[("ndcg10", "bad-search")]["held"], verdicts[("ndcg10", "bad-search")]
    broken = verdicts[("search_ndcg10", "bad-search")]
    assert not broken["held"] and broken["observed"] is not None, broken
    assert proc.returncode == 1 and "search NDCG@10" in journal["breach"], journal["breach"]
    assert "search" in (out / "report.md").read_text()
