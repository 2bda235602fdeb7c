"""Integration fixtures: a real ``ray start`` cluster (head + 1 worker) for tests that drive
Ray's own tools (``ray job submit``, ``serve run``) against it."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.testing import free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _alive_nodes(ray_bin: str, port: int, env: dict[str, str]) -> int:
    """Active nodes as ``ray status`` counts them (0 while it cannot answer)."""
    out = subprocess.run([ray_bin, "status", f"--address=127.0.0.1:{port}"], env=env,
                         capture_output=True, text=True, timeout=60, check=False).stdout
    active = out.split("Active:", 1)[1].split("Pending:", 1)[0] if "Active:" in out else ""
    return sum(1 for line in active.splitlines() if "node_" in line)


@pytest.fixture()
def ray_start_cluster(tmp_path: Path) -> Iterator[dict[str, str]]:
    """head + 1 worker via ``ray start`` (token auth on, own temp dirs and ports); stopped by
    process group, never with ``ray stop`` (which would kill every Ray on the machine)."""
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    short = Path(tempfile.mkdtemp(prefix="rdjob-", dir="/tmp"))  # unix socket paths stay short
    port, dash = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    groups: list[int] = []

    def start(*args: str) -> None:
        proc = subprocess.Popen([ray_bin, "start", "--block", "--num-cpus", "1",
                                 "--object-store-memory", str(80 * 1024 * 1024), *args],
                                env=env, cwd=tmp_path, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        groups.append(proc.pid)

    try:
        start("--head", f"--port={port}", "--dashboard-host=127.0.0.1",
              f"--dashboard-port={dash}", f"--temp-dir={short / 'head'}",
              "--include-dashboard=true")
        wait_until(lambda: port_open(port), 60, 0.2, what=f"the head's GCS on port {port}")
        start(f"--address=127.0.0.1:{port}", f"--temp-dir={short / 'worker'}")
        # Both nodes registered before a test uses the cluster: a replica placed on a node
        # that joins after a publish finds no node store there.
        wait_until(lambda: _alive_nodes(ray_bin, port, env) >= 2, 120, 0.5,
                   what="head and worker registered")
        yield {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dash}", "RAY_GCS": f"127.0.0.1:{port}"}
    finally:
        for pgid in reversed(groups):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                time.sleep(2)
        shutil.rmtree(short, ignore_errors=True)
