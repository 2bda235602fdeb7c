"""Public surface, contender helpers, report writers and CLI configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import bench.loadgen
from bench.cli import EXIT_CONFIG, app
from bench.loadgen.compare import ContenderRecord, goals, ratios
from bench.loadgen.report import markdown_report, plot_curves, plot_timeline
from bench.loadgen.saturation import Step
from bench.suite import parse_endpoint


def test_loadgen_all_names_exist() -> None:
    assert len(set(bench.loadgen.__all__)) == len(bench.loadgen.__all__)
    for name in bench.loadgen.__all__:
        assert hasattr(bench.loadgen, name), name


def test_reports_are_written(tmp_path: Path) -> None:
    s = Step(100, 99, 1.0, 1.0, 5.0, 9.0, 0.2, 0.1, True, 0.5, 0.3)
    records = [ContenderRecord("fastapi-ort", "http", (s,), s, s, s),
               ContenderRecord("flask-torch", "http", error="boom")]
    md = markdown_report(records, ratios(records), goals(records), {"versions": {"x": "1"}})
    assert "| fastapi-ort | http | 99.0 |" in md and "failed: boom" in md
    assert plot_curves(records, tmp_path / "c.png").stat().st_size > 0
    summary = {"timeline": [{"start_s": 0, "offered": 1, "ok": 1, "errors": 0, "dropped": 0,
                             "degraded": 0, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 2.0,
                             "ndcg10": None, "hr10": None}],
               "phases": [{"label": "before", "start_s": 0, "end_s": 1}]}
    assert plot_timeline(summary, tmp_path / "t.png").stat().st_size > 0


def test_endpoints_and_cli_configuration_errors(tmp_path: Path) -> None:
    assert parse_endpoint("x=http://a:1,http://a:2").addresses == ("http://a:1", "http://a:2")
    with pytest.raises(ValueError):
        parse_endpoint("x=ftp://a")
    result = CliRunner().invoke(app, ["load", "-t", "http://127.0.0.1:9", "--artifact",
                                      str(tmp_path), "--phases", "during:5-1"])
    assert result.exit_code == EXIT_CONFIG, result.output
