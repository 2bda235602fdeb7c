"""The lean core (serving, replication, drills; no torch, no transformers) installs and works on
every Python the README names: a fresh venv per interpreter, ``pip install -c constraints.txt .``
and a real check in it (imports, a signed artifact verified and a tampered one refused, the
CLI's help). The full suite itself runs on 3.11 (torch's CPU build is on disk only for it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: Every top-level package the wheel ships, as pyproject.toml lists them (one list, no drift).
PACKAGES = [p.rstrip("*") for p in tomllib.loads((REPO / "pyproject.toml").read_text())
            ["tool"]["setuptools"]["packages"]["find"]["include"]]
PYTHONS = ["3.12", "3.13"]

CHECK = r"""
import importlib, importlib.util, json, sys, tempfile
from pathlib import Path
for m in ["serving.app", "serving.deployment", "serving.frontdoor", "serving.grpc_server",
          "serving.cli", "replication.cluster", "replication.cli", "drills.runner", "drills.cli",
          "bench.loadgen", "recdrill.cli", "onnxruntime", "ray.serve"]:
    importlib.import_module(m)
from export import verify_artifact
from export.errors import ArtifactVerificationError
from replication.testing import flip_byte, make_artifact, make_keys
d = Path(tempfile.mkdtemp())
keys = make_keys(d / "k")
art = make_artifact(d / "a", "v1", keys)
verified = verify_artifact(art, keys.public)
flip_byte(art / "model.onnx")
try:
    verify_artifact(art, keys.public)
    refused = None
except ArtifactVerificationError as exc:
    refused = exc.path
print(json.dumps({"python": sys.version.split()[0], "refused": refused,
                  "torch_loaded": "torch" in sys.modules,
                  "torch_installed": importlib.util.find_spec("torch") is not None,
                  "transformers_installed": importlib.util.find_spec("transformers") is not None}))
"""


def _run(cmd: list[str], timeout: float = 120, cwd: Path | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def _interpreter(version: str) -> Path | None:
    """An interpreter for ``version`` that really runs (pyenv's shims may not)."""
    candidates: list[Path] = []
    if pyenv := shutil.which("pyenv"):
        root = _run([pyenv, "root"]).stdout.strip()
        candidates += sorted(Path(root, "versions").glob(f"{version}.*/bin/python{version}"))[::-1]
    if found := shutil.which(f"python{version}"):
        candidates.append(Path(found))
    for python in candidates:
        if _run([str(python), "-c", "pass"]).returncode == 0:
            return python
    return None


def _source_copy(dest: Path) -> Path:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(REPO / name, dest / name)
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, dest / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _install_and_check(python: Path, src: Path, venv: Path) -> dict[str, object]:
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    pip = _run([str(venv / "bin/python"), "-m", "pip", "install", "-q",
                "-c", str(src / "constraints.txt"), str(src)], timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    run = _run([str(venv / "bin/python"), "-c", CHECK], timeout=300, cwd=venv)
    assert run.returncode == 0, run.stderr[-3000:]
    helps = [_run([str(venv / "bin/recdrill"), *cmd, "--help"])
             for cmd in ([], ["serve"], ["drill", "run"])]
    assert all(h.returncode == 0 for h in helps), [h.stderr[-500:] for h in helps]
    demo = _run([str(venv / "bin/recdrill"), "demo", "--out", str(venv / "demo")])
    assert demo.returncode == 2 and "recdrill[train]" in demo.stderr, demo.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_core_installs_and_works_without_torch_on_newer_pythons(tmp_path: Path) -> None:
    pythons = {v: _interpreter(v) for v in PYTHONS}
    missing = [v for v, p in pythons.items() if p is None]
    if missing:
        pytest.skip(f"Python {', '.join(missing)} not installed (pyenv has them on our machines)")
    src = _source_copy(tmp_path / "src")
    with ThreadPoolExecutor(len(PYTHONS)) as pool:
        results = dict(zip(PYTHONS, pool.map(
            lambda v: _install_and_check(pythons[v], src, tmp_path / f"venv{v}"),  # type: ignore[arg-type]
            PYTHONS)))
    for version, got in results.items():
        assert str(got["python"]).startswith(version), got
        assert got["refused"] == "model.onnx", got
        assert got == {**got, "torch_loaded": False, "torch_installed": False,
                       "transformers_installed": False}, got
    assert sys.version_info[:2] == (3, 11)  # the full suite's own interpreter
