"""Report from a hand-built 20-second journal: headline, sections, PNG, files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench.loadgen.timeline import WindowStats
from drills.report import console_table, headline, plot_timeline, render_markdown, write_report
from drills.scenario import Scenario
from drills.slo import evaluate, held, recovery_time_s, worst_breach

_PNG = b"\x89PNG\r\n\x1a\n"
_SCENARIO = Scenario.model_validate({
    "title": "kill-one-replica", "description": "One replica dies; the other answers.",
    "load": {"rate_rps": 100, "duration_s": 20},
    "method": [{"fault": "kill-replica", "at_s": 8, "duration_s": 4}],
    "abort": [{"success_below": 0.1, "for_s": 5}],
    "steady_state_hypothesis": {"slos": [
        {"kind": "success_ratio", "min": 0.95},
        {"kind": "p99_ms", "max_ms": 100, "max_ratio": 3, "phases": ["kill-replica"]},
        {"kind": "ndcg10", "min_ratio": 0.9, "phases": ["kill-replica"]},
        {"kind": "degraded_share", "max": 0.5, "phases": ["kill-replica"]},
        {"kind": "recovery_s", "max_s": 5},
        {"kind": "fact", "fact": "capacity_back_s", "max": 30}]}})


def _window(label: str, start: float, end: float, offered: int, ok: int, p99: float,
            degraded: int = 0) -> WindowStats:
    return WindowStats(label, start, end, offered, ok, offered - ok, 0, 0, 0, degraded,
                       ok / (end - start), p99 / 3, p99, p99 * 1.5, 0.2, 0.06, ok)


def _dict(w: WindowStats) -> dict[str, Any]:
    return {**asdict(w), "success_ratio": w.success_ratio}


def _journal(fail_during: int, status: str = "completed") -> dict[str, Any]:
    """20 s at 100 req/s; seconds 8 and 9 lose ``fail_during`` requests each."""
    timeline = [_window(str(s), s, s + 1, 100, 100 - (fail_during if s in (8, 9) else 0),
                        40.0 if s in (8, 9) else 10.0, degraded=20 if 8 <= s < 12 else 0)
                for s in range(20)]
    spans = {"baseline": (0, 8), "kill-replica": (8, 12), "recovery": (12, 20),
             "whole": (0, 20)}
    phases = {name: _window(name, a, b, 100 * (b - a), 100 * (b - a) - (
        2 * fail_during if a <= 8 < b else 0), 35.0 if fail_during and a <= 8 < b else 10.0)
        for name, (a, b) in spans.items()}
    facts = {"kill-replica": {"capacity_back_s": 3.5}}
    verdicts = evaluate(_SCENARIO, phases, timeline, {"kill-replica": (8.0, 12.0)}, facts)
    events = [
        {"t_s": 8.01, "at": "2025-01-01T00:00:08Z", "kind": "fault",
         "message": "killed replica 1 (pid 4242)", "data": {}},
        {"t_s": 20.5, "at": "2025-01-01T00:00:20Z", "kind": "rollback",
         "message": "resume-replicas: 2 of 2 replicas healthy", "data": {}}]
    if status == "aborted":
        events.append({"t_s": 14.0, "at": "2025-01-01T00:00:14Z", "kind": "abort",
                       "message": "success < 0.1 for 5 s", "data": {}})
    return {
        "scenario": _SCENARIO.model_dump(mode="json"), "title": _SCENARIO.title,
        "description": _SCENARIO.description, "started_at": "2025-01-01T00:00:00Z",
        "ended_at": "2025-01-01T00:00:21Z", "status": status,
        "error": "Ray went away" if status == "error" else None,
        "environment": {
            "mode": "embedded", "ray_address": "127.0.0.1:6379", "nodes": ["head", "w1"],
            "replicas": [{"rank": 0, "node": "head", "pid": 4241, "http": "http://a:8000",
                          "grpc": "a:9000"}], "version": "v3",
            "load": {"rate_rps": 100.0, "protocol": "http", "client": "plain",
                     "addresses": ["http://a:8000"], "duration_s": 20.0}},
        "phases": [_dict(phases[n]) for n in spans], "timeline": [_dict(w) for w in timeline],
        "faults": [{"name": "kill-replica", "fault": "kill-replica", "at_s": 8.0, "end_s": 12.0,
                    "injected_at_s": 8.01, "targets": ["replica-1"],
                    "proof": {"pid_gone": True}, "facts": facts["kill-replica"], "error": None}],
        "events": events,
        "rto_s": {"kill-replica": recovery_time_s(timeline, 8.0, 0.999, 3)},
        "verdicts": [asdict(v) for v in verdicts], "held": held(verdicts),
        "breach": worst_breach(verdicts),
        "load_summary": {"offered": 2000, "ok": 2000 - 2 * fail_during, "valid": True,
                         "invalid_reasons": [], "success_ratio": 0.99,
                         "latency_ms": {"p50_ms": 3.3, "p99_ms": 12.0, "max_ms": 40.0}},
    }


def test_held_report_names_every_slo_and_fault() -> None:
    journal = _journal(fail_during=0)
    text = render_markdown(journal)
    assert text.splitlines()[0] == "# HELD: kill-one-replica"
    for v in journal["verdicts"]:
        assert v["slo"] in text
    assert "### kill-replica (kill-replica)" in text and "capacity_back_s = 3.5" in text
    assert "RTO: 0 s" in text and "resume-replicas: 2 of 2 replicas healthy" in text
    assert "timeline.png" in text and "journal.json" in text and "⚠" not in text


def test_broken_report_leads_with_the_worst_breach() -> None:
    journal = _journal(fail_during=60)
    assert not journal["held"]
    first = render_markdown(journal).splitlines()[0]
    assert first == ("# BROKEN: success ratio >= 0.95 broke in kill-replica: 0.7000 "
                     "(120 of 400 requests failed: 120 errors; budget 20)")


def test_aborted_error_and_invalid_load_headlines() -> None:
    aborted = render_markdown(_journal(60, status="aborted")).splitlines()
    assert aborted[0] == "# ABORTED: success < 0.1 for 5 s"
    assert render_markdown(_journal(0, status="error")).startswith("# ERROR: Ray went away")
    suspect = _journal(0)
    suspect["load_summary"] |= {"valid": False, "invalid_reasons": ["generator lag p99 9 ms"]}
    text = render_markdown(suspect)
    assert text.splitlines()[0].endswith("(measurement suspect: the load generator was not valid)")
    assert "> **⚠ The load generator was not valid (generator lag p99 9 ms).**" in text


def test_headline_of_a_journal_without_verdicts_is_not_held() -> None:
    assert headline({"status": "completed", "held": False}) == "BROKEN: no SLO was judged"
    assert headline({"status": "interrupted", "held": False, "error": "Ctrl-C"}) == (
        "INTERRUPTED: Ctrl-C")


@pytest.mark.parametrize("status", ["completed", "aborted"])
def test_plot_writes_a_png(tmp_path: Path, status: str) -> None:
    path = plot_timeline(_journal(60, status=status), tmp_path / "timeline.png")
    data = path.read_bytes()
    assert data.startswith(_PNG) and len(data) > 20_000
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.png"]  # no temp file left


def test_plot_of_an_empty_timeline(tmp_path: Path) -> None:
    journal = {"status": "error", "error": "no cluster", "timeline": [], "faults": []}
    assert plot_timeline(journal, tmp_path / "t.png").read_bytes().startswith(_PNG)


def test_write_report_writes_three_files_and_the_journal_round_trips(tmp_path: Path) -> None:
    journal = _journal(fail_during=60)
    paths = write_report(journal, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"journal.json", "report.md", "timeline.png"}
    assert json.loads(paths["journal"].read_text()) == json.loads(json.dumps(journal))
    assert paths["report"].read_text().startswith("# BROKEN")
    assert paths["timeline"].read_bytes().startswith(_PNG)


def test_console_table_marks_each_verdict() -> None:
    journal = _journal(fail_during=60)
    console = Console(width=200, record=True)
    console.print(console_table(journal))
    out = console.export_text()
    assert out.count("✗") == sum(not v["held"] for v in journal["verdicts"]) > 0
    assert out.count("✓") == sum(v["held"] for v in journal["verdicts"]) > 0
