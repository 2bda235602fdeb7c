"""A Ray cluster recdrill starts keeps token authentication on: a client with the wrong token
is refused, one with the right token gets in (as an attacker on the same network would try)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replication.localcluster import local_ray_cluster
from security.ray_auth import token_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _status(address: str, token: str) -> subprocess.CompletedProcess[str]:
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    return subprocess.run([ray_bin, "status", f"--address={address}"], env=env,
                          capture_output=True, text=True, timeout=90, check=False)


def test_the_cluster_refuses_a_wrong_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # the default: recdrill turns it on
    with local_ray_cluster(workers=0) as lc:
        assert os.environ["RAY_AUTH_MODE"] == "token"
        token = os.environ.get("RAY_AUTH_TOKEN") or token_path().read_text().strip()
        address = lc.cluster.address
        refused = _status(address, "0" * len(token))
        assert refused.returncode != 0 or "Active:" not in refused.stdout, refused.stdout
        allowed = _status(address, token)
        assert allowed.returncode == 0 and "Active:" in allowed.stdout, allowed.stderr[-2000:]
