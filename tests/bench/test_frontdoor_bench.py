"""The front-door benchmark's pure parts: overload verdicts, the front door's added latency,
ratios to the baseline, the report, configuration, and the helpers that need no server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.contenders.launch import RecdrillStack
from bench.contenders.process import session_pids
from bench.contenders.serve_haproxy import haproxy_env
from bench.frontdoor_bench import EXIT_CONFIG, FrontdoorBenchConfig, app
from bench.frontdoor_report import door_figures, markdown
from bench.loadgen.compare import ContenderRecord, ratios
from bench.loadgen.errors import ConfigError
from bench.loadgen.outcomes import Outcomes, Status
from bench.loadgen.overload import (
    Overload,
    added_ms,
    answered_within,
    judge_overload,
    overload_from_summary,
)
from bench.loadgen.saturation import Step
from serving.server import Endpoint


def _step(rps: float, p50: float = 1.0, kind: str = "search", valid: bool = True) -> Step:
    return Step(rps, rps, 1.0, p50, 4 * p50, 8 * p50, 0.1, 0.2, valid, kind=kind)


def _overload(goodput: float, failed_p99_ms: float | None = 5.0) -> Overload:
    return Overload(2000, 10, goodput, 0.5, 0.4, 0.05, 0.05, 0.0, 3.0, 40.0, 1.0,
                    failed_p99_ms, None, True)


def _summary(**over: object) -> dict[str, object]:
    lat = {"p50_ms": 1.0, "p99_ms": 9.0}
    base: dict[str, object] = {
        "offered_rps": 200.0, "duration_s": 10.0, "offered": 2000, "ok": 1000, "shed": 600,
        "timeouts": 100, "errors": 800, "dropped": 200, "goodput_rps": 100.0,
        "latency_ms": lat, "failed_ms": lat, "degraded_share": 0.0, "valid": True}
    return base | over


def test_overload_shares_split_errors_into_shed_timeout_and_other() -> None:
    o = overload_from_summary(_summary())
    assert (o.ok_share, o.shed_share, o.timeout_share, o.error_share, o.dropped_share) == (
        0.5, 0.3, 0.05, 0.05, 0.1)
    assert o.failed_share == 0.5


def test_slo_goodput_counts_only_successes_within_the_bound() -> None:
    status = np.array([Status.OK, Status.OK, Status.OK, Status.SHED, Status.TIMEOUT])
    latency_us = np.array([1e3, 99e3, 101e3, 1e3, 2e6])
    zeros = np.zeros(5)
    outcomes = Outcomes(zeros, zeros, latency_us, zeros, status, np.zeros(5, bool), zeros)
    assert answered_within(outcomes, 100.0) == 2
    o = overload_from_summary(_summary(), within_slo=250)
    assert o.slo_goodput_rps == 25.0
    assert judge_overload(o, 100).slo_keep == 0.25
    assert overload_from_summary(_summary()).slo_goodput_rps is None


def test_overload_of_an_empty_run_does_not_divide_by_zero() -> None:
    o = overload_from_summary(_summary(offered=0, ok=0, shed=0, timeouts=0, errors=0, dropped=0))
    assert o.ok_share == 0.0 and o.failed_share == 1.0


@pytest.mark.parametrize(("goodput", "verdict"), [
    (1000, "held"), (900, "held"), (899, "sagged"), (500, "sagged"), (499, "collapsed"),
    (0, "collapsed")])
def test_verdict_thresholds(goodput: float, verdict: str) -> None:
    assert judge_overload(_overload(goodput), 1000).verdict == verdict


def test_verdict_fast_failures_and_missing_inputs() -> None:
    assert judge_overload(_overload(950, failed_p99_ms=5.0), 1000).fast_failures is True
    assert judge_overload(_overload(950, failed_p99_ms=2000.0), 1000).fast_failures is False
    assert judge_overload(_overload(950, failed_p99_ms=None), 1000).fast_failures is None
    assert judge_overload(_overload(950), None).verdict == "unknown"
    assert judge_overload(None, 1000).keep is None


def test_added_latency() -> None:
    assert added_ms(2.0, 1.5) == 0.5
    assert added_ms(1.0, 1.5) == -0.5
    assert added_ms(None, 1.0) is None and added_ms(1.0, None) is None


def test_door_figures_compare_the_door_with_direct_replicas_at_its_half_rate() -> None:
    door = ContenderRecord("recdrill-frontdoor", "http", half=_step(600, 2.0, "half"))
    fig = door_figures(door, _step(600, 1.5, "half"), _step(600, 1.25, "half"),
                       _step(600, 3.0, "half"))
    assert fig["rate_rps"] == 600
    assert fig["added_p50_ms_vs_one_replica"] == 0.5
    assert fig["added_p50_ms_vs_replicas_rr"] == 0.75
    assert fig["grpc_p50_ms"] == 3.0
    assert door_figures(None, None, None, None)["added_p50_ms_vs_one_replica"] is None


def test_ratios_to_the_n_worker_baseline() -> None:
    records = [ContenderRecord("fastapi-ort-w2", "http", saturation=_step(2000)),
               ContenderRecord("recdrill-frontdoor", "http", saturation=_step(2500)),
               ContenderRecord("serve-proxy", "http", saturation=None)]
    table = ratios(records, ("fastapi-ort-w2",))
    assert table["recdrill-frontdoor"]["fastapi-ort-w2"] == 1.25
    assert table["serve-proxy"]["fastapi-ort-w2"] is None


def test_markdown_has_one_row_per_contender_and_the_door_section() -> None:
    sat = _step(1000)
    door = ContenderRecord(
        "recdrill-frontdoor", "http", (sat, _step(500, 2, "half", valid=False)), sat,
        _step(500, 2, "half"), _step(2000, kind="double"),
        extra={"overload": {"offered_rps": 2000, "goodput_rps": 950, "shed_share": 0.5,
                            "slo_goodput_rps": 900, "failed_p50_ms": 1.0, "failed_p99_ms": 3.0,
                            "valid": True},
               "verdict": {"keep": 0.95, "slo_keep": 0.9, "verdict": "held",
                           "fast_failures": True}})
    ref = ContenderRecord("recdrill-replica-direct", "http", (_step(500, kind="half"),),
                          half=_step(500, kind="half"), extra={"role": "reference"})
    broken = ContenderRecord("serve-haproxy", "http", error="no haproxy\nmore")
    fig = door_figures(door, ref.half, None, None)
    md = markdown([door, ref, broken], {"recdrill-frontdoor": {"b": 1.5}}, "b", fig,
                  {"versions": {"ray": "2"}}, {"slo_p99_ms": 100})
    assert "| recdrill-frontdoor \\* | http | 1,000 | 1.50 |" in md
    assert "| recdrill-frontdoor | 2,000 | 950 (0.95×) | 900 (0.90×) | – |" in md
    assert "held, fails fast" in md and "failed: no haproxy |" in md
    assert "| recdrill-replica-direct | http |" not in md  # a reference point, not a row
    assert "adds **1.000 ms** at p50" in md


def test_config_checks_and_quick_preset(tmp_path: Path) -> None:
    cfg = FrontdoorBenchConfig(tmp_path, tmp_path / "k.pub", tmp_path / "out", replicas=2)
    assert cfg.baseline == "fastapi-ort-w2"
    quick = cfg.quick()
    assert quick.step_s < cfg.step_s and quick.duration_s < cfg.duration_s
    assert quick.generator_cpu is None and quick.refine < cfg.refine
    assert cfg.suite_config().serve_replicas == 2
    with pytest.raises(ConfigError, match="unknown contenders"):
        FrontdoorBenchConfig(tmp_path, tmp_path, tmp_path, contenders=("nginx",))
    with pytest.raises(ConfigError, match="overload_factor"):
        FrontdoorBenchConfig(tmp_path, tmp_path, tmp_path, overload_factor=1.0)


def test_cli_refuses_a_missing_artifact(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--artifact", str(tmp_path / "nope"), "--public-key",
                                      str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == EXIT_CONFIG, result.output


def test_haproxy_env_keeps_every_path_and_port_private(tmp_path: Path) -> None:
    ports = iter(range(31234, 31300))
    env = haproxy_env(tmp_path, lambda: next(ports))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert env["RAY_SERVE_HAPROXY_NBTHREAD"] == "1"
    for key in ("CONFIG_FILE_LOC", "SOCKET_PATH", "SERVER_STATE_BASE", "SERVER_STATE_FILE",
                "METRICS_SOCKET_PATH"):
        assert env[f"RAY_SERVE_HAPROXY_{key}"].startswith(str(tmp_path)), key
    lo, hi = (int(env[f"RAY_SERVE_DIRECT_INGRESS_{e}_HTTP_PORT"]) for e in ("MIN", "MAX"))
    assert 20000 <= lo < hi <= 60000


def test_recdrill_stack_from_the_serve_line() -> None:
    line = json.loads('{"http": ["http://127.0.0.1:8100", "http://127.0.0.1:8101"], '
                      '"grpc": ["127.0.0.1:9100", "127.0.0.1:9101"], "metrics": [], '
                      '"proxy": "http://127.0.0.1:8000"}')
    stack = RecdrillStack.from_line(line)
    assert stack.endpoints[1] == Endpoint("127.0.0.1", 8101, 9101)
    assert stack.proxy_url == "http://127.0.0.1:8000"


def test_session_pids_lists_this_session_without_this_process() -> None:
    mine = session_pids(os.getsid(0))
    assert os.getpid() not in mine


def test_stopping_a_server_also_kills_its_session_outside_the_group() -> None:
    import signal
    import subprocess
    import sys

    from bench.contenders.process import ServerProcess

    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)'], process_group=0); print('up', flush=True); "
            "time.sleep(60)")
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              start_new_session=True)
    assert leader.stdout is not None and leader.stdout.readline() == b"up\n"
    os.killpg(leader.pid, signal.SIGKILL)  # like a driver killed before it stopped Ray
    leader.wait()
    assert session_pids(leader.pid)  # the child in its own group survived
    ServerProcess._sweep_session(leader.pid, settle_s=0.2)
    assert session_pids(leader.pid) == []
