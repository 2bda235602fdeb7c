"""Drills for real, as a user runs them: ``python -m drills run`` on an embedded head + 2
worker cluster (replica-kill, node-kill, shortened), and ``ray job submit`` against a
cluster started with ``ray start``. Each asserts the fault was proven from outside and that
the report's numbers agree with the per-request record, whatever the verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drill_factory import DrillFiles, build_drill_files

from serving.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> DrillFiles:
    return build_drill_files(tmp_path_factory.mktemp("drill-files"))


def _drill(files: DrillFiles, scenario: str, out: Path, *extra: str,
           env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str],
                                                       dict[str, Any]]:
    cmd = [sys.executable, "-m", "drills", "run", scenario, "--out", str(out), "--artifact",
           str(files.artifact), "--checkpoint", str(files.checkpoint), "--public-key",
           str(files.public_key), "--signing-key", str(files.private_key), "--no-progress",
           *extra]
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
                          check=False)
    journal_path = out / "journal.json"
    assert journal_path.exists(), proc.stdout + proc.stderr[-4000:]
    return proc, json.loads(journal_path.read_text())


def _check_consistent(journal: dict[str, Any], proc: subprocess.CompletedProcess[str],
                      out: Path) -> None:
    """The verdict, exit code, phases and per-second timeline agree with each other."""
    assert journal["status"] == "completed", journal.get("error")
    verdicts = journal["verdicts"]
    assert verdicts and journal["held"] == all(v["held"] for v in verdicts)
    assert proc.returncode == (0 if journal["held"] else 1), proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("HELD" if journal["held"] else "BROKEN: "), line
    if not journal["held"]:
        assert journal["breach"] and journal["breach"] in line
    seconds = journal["timeline"]
    for phase in journal["phases"]:
        inside = [s for s in seconds if phase["start_s"] <= s["start_s"] < phase["end_s"]]
        whole_seconds = all(phase[k] == int(phase[k]) for k in ("start_s", "end_s"))
        if phase["end_s"] - phase["start_s"] >= 1 and whole_seconds:
            assert phase["offered"] == sum(s["offered"] for s in inside)
            assert phase["ok"] == sum(s["ok"] for s in inside)
    base = next(p for p in journal["phases"] if p["label"] == "baseline")
    assert base["offered"] > 0 and base["ok"] == base["offered"], base
    for name in ("journal.json", "report.md", "timeline.png"):
        assert (out / name).stat().st_size > 500


def test_replica_kill_is_proven_and_judged_as_a_plain_client_sees_it(files: DrillFiles,
                                                                       tmp_path: Path) -> None:
    proc, journal = _drill(files, "replica-kill", tmp_path / "out", "--time-scale", "0.6")
    _check_consistent(journal, proc, tmp_path / "out")
    fault = journal["faults"][0]
    assert fault["error"] is None, fault
    assert fault["proof"]["pids_gone_after_s"] < 5
    assert fault["facts"]["capacity_back_s"] is not None
    old = {r["rank"]: r["pid"] for r in journal["environment"]["replicas"]}
    new = {int(k): v for k, v in fault["proof"]["replacements"].items()}
    assert any(old[k] != v for k, v in new.items())  # a new process took the killed rank
    assert journal["environment"]["load"]["kind"] == "http"  # one attempt, no retries
    assert journal["environment"]["load"]["retries"] == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.splitlines()[0].startswith("# HELD" if journal["held"] else "# BROKEN")


def test_node_kill_takes_every_process_of_the_node(files: DrillFiles, tmp_path: Path) -> None:
    proc, journal = _drill(files, "node-kill", tmp_path / "out", "--time-scale", "0.6")
    _check_consistent(journal, proc, tmp_path / "out")
    fault = journal["faults"][0]
    assert fault["error"] is None, fault
    proof = fault["proof"]
    assert proof["pids_gone_after_s"] is not None and len(proof["killed_pids"]) >= 2
    assert proof["ray_marked_dead_after_s"] is not None
    assert proof["replicas_on_node"], "the drill must pick a node that hosts a replica"
    rollbacks = [e for e in journal["events"] if e["kind"] == "rollback"]
    assert any("replaced by a new worker" in e["message"] for e in rollbacks)


@pytest.fixture(scope="module")
def redis_installed() -> str:
    """GCS fault tolerance needs a real Redis: installed from Debian's packages when missing
    (the suite runs as root on a fresh machine, as CI does)."""
    exe = shutil.which("redis-server")
    if exe is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], env=env,
                              capture_output=True, text=True, check=False)
        exe = shutil.which("redis-server")
        assert exe is not None, f"could not install redis-server:\n{proc.stderr[-2000:]}"
    return exe


def test_head_kill_with_gcs_fault_tolerance(files: DrillFiles, tmp_path: Path,
                                            redis_installed: str) -> None:
    proc, journal = _drill(files, "head-kill", tmp_path / "out", "--time-scale", "0.5")
    _check_consistent(journal, proc, tmp_path / "out")
    fault = journal["faults"][0]
    assert fault["error"] is None, fault
    proof, facts = fault["proof"], fault["facts"]
    assert proof["pids_gone_after_s"] is not None and len(proof["killed_pids"]) >= 2
    assert proof["replicas_ready_while_down"] == [2, 2]  # serving went on without a head
    assert facts["control_plane_back_s"] is not None  # Serve's controller recovered
    assert facts["publish_after_restart_s"] is not None  # and publishing works again
    assert facts["replicas_replaced"] == 0  # the recovered controller kept the replicas


# -- ray job submit against a `ray start` cluster -------------------------------------------------

def test_drill_runs_as_a_ray_job_on_a_ray_start_cluster(files: DrillFiles, tmp_path: Path,
                                                        ray_start_cluster: dict[str, str]) -> None:
    env = ray_start_cluster
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    wait_until(lambda: subprocess.run([ray_bin, "job", "list", "--address", env["RAY_ADDRESS"]],
                                      env=env, capture_output=True, check=False).returncode == 0,
               60, 1.0, what="the job server")
    out = tmp_path / "job-out"
    cmd = [ray_bin, "job", "submit", "--address", env["RAY_ADDRESS"], "--working-dir",
           str(ROOT), "--", "python", "-m", "drills", "run", "drills/scenarios/replica-kill.yaml",
           "--time-scale", "0.5", "--out", str(out), "--artifact", str(files.artifact),
           "--checkpoint", str(files.checkpoint), "--public-key", str(files.public_key),
           "--no-progress"]
    deadline = time.monotonic() + 240
    while True:  # the head's job agent comes up after the job server (minutes on a busy host)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        if "No available agent" not in proc.stderr + proc.stdout or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert (out / "journal.json").exists(), proc.stdout[-4000:] + proc.stderr[-2000:]
    journal = json.loads((out / "journal.json").read_text())
    assert journal["environment"]["mode"] == "attached", journal["environment"]
    assert journal["status"] == "completed", journal.get("error")
    assert journal["faults"][0]["error"] is None, journal["faults"][0]
    assert len(journal["environment"]["nodes"]) == 2
    # the job's exit status is the drill's: succeeded only when every SLO held
    held = journal["held"]
    assert (proc.returncode == 0) == held, proc.stdout[-3000:]
    assert ("' succeeded" if held else "' failed") in proc.stdout + proc.stderr
