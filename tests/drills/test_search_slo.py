"""Search in drills: the load option, the search_ndcg10 SLO (held, broken, not measured), the
plan, the report, the runner's refusal of an artifact without search, the shipped scenario."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from bench.loadgen.timeline import WindowStats
from bench.loadgen.workload import HeldOutQuery, HeldOutUser, Workload
from drills.catalog import catalog
from drills.errors import EnvironmentError_
from drills.loader import load_scenario
from drills.plan import plan_text
from drills.report import plot_timeline, render_markdown
from drills.runner import search_queries, with_searches
from drills.scenario import Scenario, SearchNdcgSLO
from drills.slo import Verdict, evaluate, worst_breach

_PNG = b"\x89PNG\r\n\x1a\n"


def _scenario(*slos: dict[str, Any], share: float = 0.3) -> Scenario:
    return Scenario.model_validate({
        "title": "t", "load": {"rate_rps": 100, "duration_s": 40, "search_share": share},
        "method": [{"fault": "stall-replica", "name": "stall", "at_s": 8}],
        "steady_state_hypothesis": {"slos": list(slos) or [
            {"kind": "search_ndcg10", "min_ratio": 0.9, "phases": ["stall"]}]}})


def _w(label: str = "stall", *, searches: int = 300, search_ok: int | None = None,
       ndcg: float | None = 0.5, recall: float | None = 0.7, offered: int = 1000) -> WindowStats:
    search_ok = searches if search_ok is None else search_ok
    scored = search_ok if ndcg is not None else 0
    return WindowStats(label, 0.0, 10.0, offered, offered, 0, 0, 0, 0, 0, 100.0, 2.0, 10.0, 20.0,
                       0.2, 0.06, offered - searches, searches, search_ok, 3.0, 12.0,
                       recall if scored else None, ndcg if scored else None, scored)


def _judge(phase: WindowStats, base: WindowStats | None = None, min_ratio: float = 0.9
           ) -> Verdict:
    phases = {"stall": phase} | ({"baseline": base} if base is not None else {})
    s = _scenario({"kind": "search_ndcg10", "min_ratio": min_ratio, "phases": ["stall"]})
    [verdict] = evaluate(s, phases, [], {"stall": (8.0, 18.0)}, {})
    return verdict


# --- scenario -------------------------------------------------------------------------------


def test_search_share_defaults_to_none_and_is_bounded() -> None:
    plain = Scenario.model_validate({
        "title": "t", "load": {"rate_rps": 10, "duration_s": 20},
        "method": [{"fault": "kill-replica", "at_s": 5}],
        "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 0.9}]}})
    assert plain.load.search_share == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValidationError, match="search_share"):
            _scenario(share=bad)


def test_a_search_slo_needs_searches_in_the_load() -> None:
    assert isinstance(_scenario().steady_state_hypothesis.slos[0], SearchNdcgSLO)
    with pytest.raises(ValidationError, match="set load.search_share above 0"):
        _scenario(share=0.0)
    with pytest.raises(ValidationError, match="min_ratio"):
        _scenario({"kind": "search_ndcg10", "min_ratio": 0})


# --- verdicts -------------------------------------------------------------------------------


def test_search_ndcg_holds_against_the_baseline() -> None:
    v = _judge(_w(ndcg=0.46), base=_w("baseline", ndcg=0.5))
    assert (v.held, v.observed, v.kind, v.limit) == (True, 0.92, "search_ndcg10",
                                                     ">= 0.9x baseline (0.5000)")
    assert v.slo == "search NDCG@10 >= 0.9x baseline"
    assert v.detail == "0.92x baseline (0.4600 vs 0.5000, Recall@10 0.7000, 300 scored searches)"


def test_search_ndcg_breach_says_by_how_much() -> None:
    v = _judge(_w(ndcg=0.1), base=_w("baseline", ndcg=0.5))
    assert (v.held, v.observed, v.miss) == (False, 0.2, 4.5)
    assert worst_breach([v]) == ("search NDCG@10 >= 0.9x baseline broke in stall: 0.2x "
                                 "baseline (0.1000 vs 0.5000, Recall@10 0.7000, 300 scored "
                                 "searches)")


@pytest.mark.parametrize(("phase", "base", "detail"), [
    (_w(searches=0), _w("baseline"),
     "no searches were offered in stall (0 of 1,000 requests); search NDCG@10 not measured"),
    (_w(search_ok=0, ndcg=None), _w("baseline"),
     ("search NDCG@10 not measured in stall (no scored search answers; 0 of 300 searches "
      "answered)")),
    (_w(), None, "baseline search NDCG@10 was not measured"),
    (_w(), _w("baseline", ndcg=0.0), "baseline search NDCG@10 is 0, so the ratio is undefined"),
    (_w(offered=0, searches=0), _w("baseline"),
     "no requests were offered in stall; nothing measured"),
])
def test_search_ndcg_not_measured_is_not_held(phase: WindowStats, base: WindowStats | None,
                                              detail: str) -> None:
    v = _judge(phase, base)
    assert (v.held, v.miss, v.detail) == (False, None, detail)


# --- plan and report ------------------------------------------------------------------------


def test_plan_names_the_search_share_and_slo() -> None:
    text = plan_text(_scenario())
    assert "30% of the requests are held-out searches" in text
    assert "search NDCG@10 >= 0.9x baseline in stall" in text


def _journal(searches: bool) -> dict[str, Any]:
    scenario = _scenario() if searches else _scenario(
        {"kind": "success_ratio", "min": 0.9}, share=0.0)
    windows = {"baseline": _w("baseline", ndcg=0.5), "stall": _w(ndcg=0.2),
               "recovery": _w("recovery", ndcg=0.49)}
    if not searches:
        windows = {k: replace(w, searches=0, search_ok=0, search_p99_ms=None,
                              search_recall10=None, search_ndcg10=None, search_scored=0)
                   for k, w in windows.items()}
    timeline = [replace(windows["stall" if 8 <= s < 18 else "baseline"], label=str(s),
                        start_s=float(s), end_s=float(s + 1)) for s in range(40)]
    verdicts = evaluate(scenario, windows, timeline, {"stall": (8.0, 18.0)}, {})

    def row(w: WindowStats) -> dict[str, Any]:
        return {**asdict(w), "success_ratio": w.success_ratio}

    return {"scenario": scenario.model_dump(mode="json"), "title": "t", "status": "completed",
            "phases": [row(w) for w in windows.values()], "timeline": [row(w) for w in timeline],
            "faults": [{"name": "stall", "fault": "stall-replica", "at_s": 8.0, "end_s": 18.0}],
            "verdicts": [asdict(v) for v in verdicts], "held": False,
            "environment": {"load": {"search_share": 0.3 if searches else 0.0,
                                     "search_queries": 120}},
            "load_summary": {"valid": True, "search": {
                "offered": 1200, "ok": 1200, "success_ratio": 1.0, "degraded_share": 0.25,
                "latency_ms": {"p50_ms": 3.0, "p99_ms": 12.0},
                "quality": {"scored": 1200, "recall": 0.6, "ndcg": 0.4}}} if searches else
            {"valid": True}}


def test_report_shows_search_quality_per_phase_only_when_searched() -> None:
    text = render_markdown(_journal(searches=True))
    assert ("| phase | window | offered | success | failed | p50 | p99 | max | NDCG@10 | "
            "search Recall@10 | search NDCG@10 | search p99 | degraded share |") in text
    assert "| stall | 0–10 s | 1,000 | 1.0000 | 0 | 2.0 ms | 10.0 ms | 20.0 ms | 0.0600 | " \
           "0.7000 | 0.2000 | 12.0 ms | 0.000 |" in text
    assert "| search NDCG@10 >= 0.9x baseline | stall | 0.400x |" in text
    assert "30% of the requests are held-out searches (120 test queries)" in text
    assert "- searches: 1,200 offered, 1,200 ok (success 1.0000), p50 3.0 ms, p99 12.0 ms; " \
           "Recall@10 0.6000, NDCG@10 0.4000 over 1,200 scored; BM25 answered 0.250" in text
    plain = render_markdown(_journal(searches=False))
    assert "search" not in plain.lower()


@pytest.mark.parametrize("searches", [True, False])
def test_plot_draws_the_search_line(tmp_path: Path, searches: bool) -> None:
    data = plot_timeline(_journal(searches), tmp_path / "t.png").read_bytes()
    assert data.startswith(_PNG) and len(data) > 20_000


# --- runner (pure parts) --------------------------------------------------------------------


def _artifact(tmp_path: Path, search: bool) -> Path:
    art = tmp_path / "art"
    (art / "search").mkdir(parents=True)
    io: dict[str, Any] = ({"search": {"queries": "search/queries.parquet"}} if search
                          else {"inputs": []})
    (art / "manifest.json").write_text(json.dumps({"io": io}))
    pd.DataFrame({"query": ["red shoes", "hat"], "split": ["test", "validation"],
                  "relevant": [["s1", "s2"], ["h1"]]}).to_parquet(art / "search/queries.parquet")
    pd.DataFrame({"index": [1, 2, 3], "item_id": ["s1", "s2", "h1"]}).to_parquet(
        art / "items.parquet")
    return art


def test_runner_refuses_an_artifact_without_search_before_anything_starts(tmp_path: Path
                                                                          ) -> None:
    with pytest.raises(EnvironmentError_, match=r"sends 30% searches \(load.search_share\) but "
                                                "cannot score them: .*carries no search model"):
        search_queries(_scenario(), _artifact(tmp_path, search=False))


def test_runner_loads_test_queries_only_when_the_drill_searches(tmp_path: Path) -> None:
    art = _artifact(tmp_path, search=True)
    queries = search_queries(_scenario(), art)
    assert queries == (HeldOutQuery("red shoes", ("s1", "s2")),)
    no_search = _scenario({"kind": "success_ratio", "min": 0.9}, share=0.0)
    assert search_queries(no_search, tmp_path / "nothing-there") == ()
    workload = Workload((HeldOutUser("u", ("a",), "b"),))
    assert with_searches(workload, queries, 0.0) is workload
    mixed = with_searches(workload, queries, 0.3)
    assert (mixed.search_share, mixed.searches, mixed.users) == (0.3, queries, workload.users)


# --- shipped scenario -----------------------------------------------------------------------


def test_search_replica_stall_is_shipped_and_judges_search() -> None:
    s = load_scenario(catalog()["search-replica-stall"])
    assert s.load.search_share == 0.3 and s.fault_names() == ["stall-replica"]
    search = [slo for slo in s.steady_state_hypothesis.slos if isinstance(slo, SearchNdcgSLO)]
    assert [(slo.min_ratio, slo.phases) for slo in search] == [(0.3, ("faults",)),
                                                                (0.9, ("recovery",))]
    kinds = {slo.kind for slo in s.steady_state_hypothesis.slos}
    assert kinds >= {"success_ratio", "degraded_share", "search_ndcg10", "recovery_s"}
