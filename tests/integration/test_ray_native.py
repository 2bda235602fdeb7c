"""recdrill the Ray-native way, on a cluster started with ``ray start`` (token auth on):
``serve run deploy/serve_config.yaml`` deploys through the module-level builder; then
``recdrill serve`` joins the same cluster, serves behind its front door (one HTTP and one gRPC
address), and on exit deletes only its own application: the other one keeps answering.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from serving_factory import build_artifacts

from serving.proto import recdrill_pb2 as pb
from serving.proto import recdrill_pb2_grpc as pbg
from serving.testing import free_port, free_port_base, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _post(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    req = urllib.request.Request(url + "/v1/recommend", data=b'{"user_id": "u1", "k": 3}',
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return dict(json.loads(resp.read()))


def test_serve_run_config_then_recdrill_serve_leaves_the_other_app_alone(
        tmp_path: Path, ray_start_cluster: dict[str, str]) -> None:
    env = {**ray_start_cluster}
    env.pop("PYTHONPATH", None)  # code reaches replicas by install / runtime_env, not PYTHONPATH
    gcs = env.pop("RAY_ADDRESS") and env["RAY_GCS"]
    arts = build_artifacts(tmp_path / "artifacts", versions=("v1",))
    cfg = yaml.safe_load((ROOT / "deploy/serve_config.yaml").read_text())
    base = free_port_base(2)
    app = cfg["applications"][0]
    app["name"] = "shop-config"
    app["args"] = {"artifact": str(arts.path("v1")), "public_key": str(arts.public_key),
                   "app_name": "shop-config", "host": "127.0.0.1", "http_port": base,
                   "grpc_port": base + 40, "replicas": 1, "num_cpus": 0.5}
    (tmp_path / "serve_config.yaml").write_text(yaml.safe_dump(cfg))
    serve_bin = shutil.which("serve") or str(Path(sys.executable).parent / "serve")
    ray_run = subprocess.Popen([serve_bin, "run", "--address", gcs, "--non-blocking",
                                str(tmp_path / "serve_config.yaml")], env=env, cwd=tmp_path,
                               start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    recdrill = None
    try:
        out, _ = ray_run.communicate(timeout=240)
        assert ray_run.returncode == 0, out[-3000:]
        other = f"http://127.0.0.1:{base}"
        answer = wait_until(lambda: _post(other), 60, 0.5, what="the serve-run app",
                            ignore=(OSError, ValueError))
        assert answer["model_version"] == "v1"

        rd_base = free_port_base(2, start=base + 200)
        door_http, door_grpc, door_metrics = free_port(), free_port(), free_port()
        recdrill = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve", "--artifact",
             os.path.relpath(arts.path("v1"), tmp_path), "--public-key", str(arts.public_key),
             "--ray-address", gcs, "--replicas", "2", "--num-cpus", "0.5", "--http-port",
             str(rd_base), "--grpc-port", str(rd_base + 40), "--frontdoor-http-port",
             str(door_http), "--frontdoor-grpc-port", str(door_grpc),
             "--frontdoor-metrics-port", str(door_metrics)],
            env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert recdrill.stdout is not None
        info = json.loads(recdrill.stdout.readline() or "{}")
        assert info, recdrill.stderr.read()[-3000:] if recdrill.poll() is not None else "no line"
        door = info["frontdoor"]
        assert door["http"] == f"http://127.0.0.1:{door_http}"
        seen: set[str] = set()  # one address, both replicas behind it (HAProxy may need a
        # second health check to mark a just-started replica UP, so ask until both answered)
        wait_until(lambda: seen.add(_post(door["http"])["replica"]) or len(seen) == 2, 30, 0.05,
                   what="both replicas through the front door")
        with grpc.insecure_channel(door["grpc"]) as channel:
            answer = pbg.RecommenderStub(channel).Recommend(
                pb.RecommendRequest(user_id="u1", k=3), timeout=10)
        assert answer.model_version == "v1" and len(answer.items) == 3
        metrics = urllib.request.urlopen(door["metrics"], timeout=5).read().decode()
        assert "haproxy_backend_active_servers" in metrics
        targets = json.loads(Path(door["prometheus_file_sd"]).read_text())
        assert sorted(targets[0]["targets"]) == sorted(
            u.removeprefix("http://") for u in info["http"])

        recdrill.send_signal(signal.SIGINT)
        assert recdrill.wait(90) == 0, recdrill.stderr.read()[-3000:] if recdrill.stderr else ""
        wait_until(lambda: _closed(info["http"][0]), 30, 0.5, what="recdrill's replicas to go")
        assert _closed(door["http"])  # the front door went with it
        assert _post(other)["model_version"] == "v1"  # the other application is untouched
    finally:
        for proc in (recdrill, ray_run):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def _closed(url: str) -> bool:
    try:
        _post(url, timeout_s=2)
    except (urllib.error.URLError, OSError):
        return True
    return False
