"""Fixtures for replication unit tests: never start Ray; signed artifacts in tmp."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from replication.keys import KeySpec, generate_key_file
from replication.testing import SigningKeys, make_artifact, make_keys


@pytest.fixture(autouse=True)
def _disallow_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests must never start Ray (Ray's own ``disallow_ray_init`` idea)."""
    try:
        import ray
    except ImportError:
        return

    def _refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests must not call ray.init; put this test in tests/integration")

    monkeypatch.setattr(ray, "init", _refuse)


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    return make_keys(tmp_path_factory.mktemp("signing"))


@pytest.fixture
def key_spec(tmp_path: Path) -> KeySpec:
    """An AES-256 key file in tmp (never in the repo); no env var lookup."""
    path = tmp_path / "keys" / "store.key"
    generate_key_file(path)
    return KeySpec(files=(str(path),), env_var=None)


@pytest.fixture
def artifact(tmp_path: Path, signing_keys: SigningKeys):  # type: ignore[no-untyped-def]
    """Factory: artifact("v1") -> a signed artifact directory."""

    def _make(version: str, **kwargs: object) -> Path:
        return make_artifact(tmp_path / "artifacts", version, signing_keys, **kwargs)  # type: ignore[arg-type]

    return _make
