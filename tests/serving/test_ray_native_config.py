"""The Ray-native deployment files and the driver-side checks: both shipped configs are valid
Ray Serve configs whose args are valid recdrill settings; the builder is importable by its
import path; every path is made absolute and checked, each failure named."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema
from serving_factory import Artifacts

from serving.config import ServeSettings, resolve_paths

ROOT = Path(__file__).resolve().parents[2]


def _serve_configs() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kuberay-rayservice.yaml").read_text()))
    rayservice = next(d for d in docs if d["kind"] == "RayService")
    return {"serve_config.yaml": yaml.safe_load((ROOT / "deploy/serve_config.yaml").read_text()),
            "kuberay": yaml.safe_load(rayservice["spec"]["serveConfigV2"])}


@pytest.mark.parametrize("name", ["serve_config.yaml", "kuberay"])
def test_shipped_configs_are_serve_configs_with_valid_recdrill_args(name: str) -> None:
    config = ServeDeploySchema.model_validate(_serve_configs()[name])
    (app,) = config.applications
    module, _, attr = app.import_path.partition(":")
    builder = getattr(importlib.import_module(module), attr)
    assert callable(builder)
    settings = ServeSettings.model_validate(app.args)  # every arg is a known, valid field
    assert settings.store == "node" and settings.replicas >= 2
    (dep,) = app.deployments
    assert dep.name == "RecommenderReplica" and "version" in dep.user_config
    assert config.proxy_location == "Disabled"  # replicas are the ingress


def test_the_builder_refuses_a_bad_path_by_name_before_any_replica(tmp_path: Path) -> None:
    from serving.deployment import app_builder

    with pytest.raises(ValueError, match=r"public_key: .*/missing.pub does not exist"):
        app_builder({"store": "node", "public_key": str(tmp_path / "missing.pub")})
    with pytest.raises(ValueError, match="replicas"):
        app_builder({"store": "node", "public_key": "k", "replicas": 0})


def test_relative_paths_become_absolute(artifacts: Artifacts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(artifacts.root.parent)
    rel = ServeSettings(artifact=artifacts.root.name, public_key=str(
        artifacts.public_key.relative_to(artifacts.root.parent)))
    out = resolve_paths(rel)
    assert out.artifact == str(artifacts.root) and out.public_key == str(artifacts.public_key)
    assert resolve_paths(out) == out  # idempotent: the same code version on every deploy


@pytest.mark.parametrize(("change", "message"), [
    ({"artifact": "{tmp}/nowhere"}, "artifact: {tmp}/nowhere does not exist"),
    ({"artifact": "{key}"}, "artifact: {key} is not a directory"),
    ({"artifact": "{tmp}"}, "artifact: {tmp} holds no manifest.json"),
    ({"public_key": "{tmp}"}, "public_key: {tmp} is not a file"),
    ({"key_files": ("{tmp}/k",)}, "key_files: {tmp}/k does not exist"),
    ({"artifact": None, "store": "{tmp}/store"}, "store: {tmp}/store does not exist"),
])
def test_each_bad_path_is_named(artifacts: Artifacts, tmp_path: Path, change: dict[str, Any],
                                message: str) -> None:
    def fill(v: Any) -> Any:
        if isinstance(v, tuple):
            return tuple(fill(x) for x in v)
        return v.format(tmp=tmp_path, key=artifacts.public_key) if isinstance(v, str) else v

    base = {"artifact": str(artifacts.path("v1")), "public_key": str(artifacts.public_key)}
    settings = ServeSettings(**{**base, **{k: fill(v) for k, v in change.items()}})
    with pytest.raises(ValueError) as err:
        resolve_paths(settings)
    assert str(err.value).startswith(fill(message)), err.value


def test_urls_and_node_stores_are_left_to_the_replicas(artifacts: Artifacts) -> None:
    for store in ("node", "s3://bucket/recdrill"):
        s = ServeSettings(store=store, public_key=str(artifacts.public_key))
        assert resolve_paths(s).store == store
