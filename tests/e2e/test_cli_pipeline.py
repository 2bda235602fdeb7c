"""The stages as a user runs them: subprocesses, exit codes, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    keys, state = tmp_path_factory.mktemp("keys"), tmp_path_factory.mktemp("state")
    # Keys and the audit chain they anchor go together: another key dir, another log.
    return {**os.environ, "RECDRILL_KEY_DIR": str(keys), "RECDRILL_STATE_DIR": str(state),
            "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    _run("training", "synth", "--out", str(out), "--items", "300", "--users", "300", env=env)
    return out


def test_train_export_verify_and_refuse_tampering(synthetic: Path, env: dict[str, str],
                                                  tmp_path: Path) -> None:
    ckpt, art = tmp_path / "ckpt", tmp_path / "art"
    out = _run("training", "train", "--data", str(synthetic), "--out", str(ckpt),
               "--event-col", "event_type", "--max-epochs", "3", "--no-progress", env=env)
    report = json.loads(out.stdout)
    assert set(report["test"]) >= {"sasrec", "popularity", "transitions", "item_knn"}
    built = json.loads(_run("export", "build", str(ckpt), "--out", str(art), env=env).stdout)
    assert built["parity"]["max_abs_diff"] <= 1e-4
    assert json.loads(_run("export", "verify", str(art), env=env).stdout)["ok"] is True

    blob = bytearray((art / "fallback.npz").read_bytes())
    blob[10] ^= 0x20
    (art / "fallback.npz").write_bytes(bytes(blob))
    refused = _run("export", "verify", str(art), env=env, check=False)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["file"] == "fallback.npz"
    assert "fallback.npz" in refused.stderr


def test_bad_input_is_one_clear_error(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "events.csv"
    bad.write_text("user_id,item_id,timestamp\nu1,a,1\nu1,b,soon\n")
    proc = _run("training", "train", "--data", str(bad), "--out", str(tmp_path / "c"),
                "--no-progress", env=env, check=False)
    assert proc.returncode == 2
    assert "events.csv" in proc.stderr and "timestamp" in proc.stderr and "row 2" in proc.stderr
    assert not (tmp_path / "c").exists()


def test_demo_runs_every_step_and_serves_what_it_measured(synthetic: Path, env: dict[str, str],
                                                          tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "recdrill", "demo", "--data", str(synthetic),
                           "--out", str(tmp_path), "--max-time-s", "15", "--no-progress",
                           "--search-time-s", "40", "--drill", "game-day",
                           "--drill-time-scale", "0.4"],
                          cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr  # whatever the model's rank: never a coin flip
    summary = json.loads(proc.stdout)
    assert summary["tamper_check"]["refused_file"] == "model.onnx"
    assert summary["verify"]["ok"] is True
    assert json.loads((tmp_path / "report.json").read_text()) == summary
    served = summary["publish_serve_score"]
    assert len(served["publish"]["committed_on"]) >= 2
    offline = summary["train_and_evaluate"]["test"]["sasrec"]
    for transport in ("served_http", "served_grpc"):
        # What clients get over the wire is what the offline table reports.
        assert served[transport]["unfiltered"]["ndcg@10"] == pytest.approx(offline["ndcg@10"], abs=1e-3)
        assert served[transport]["unfiltered"]["degraded"] == 0
        assert len(served[transport]["unfiltered"]["answered_by"]) == 2
    # Product search: fine-tuned, exported in the same signed version, served by the same
    # replicas; what clients get over the wire is what the export measured on ONNX.
    searched = summary["search_train_and_evaluate"]
    assert set(searched["metrics"]["test"]) == {"bm25", "pretrained", "finetuned"}
    exported = summary["export"]["search"]["metrics"]
    assert summary["export"]["search"]["parity_max_abs_diff"] <= 1e-4
    for transport in ("http", "grpc"):
        got = served[f"served_search_{transport}"]
        assert got["degraded"] == 0 and got["queries"] == exported["search_onnx_test_queries"]
        assert got["ndcg@10"] == pytest.approx(exported["search_onnx_test_ndcg@10"], abs=1e-3)
    # The main job ends with the game-day (shortened): every fault injected and proven,
    # whatever the verdict; the report and plot are where the summary says.
    drill = summary["drill"]
    assert drill["status"] == "completed" and drill["fault_errors"] == {}, drill
    assert drill["slos"] > 0 and Path(drill["report"]).exists() and Path(drill["timeline"]).exists()
