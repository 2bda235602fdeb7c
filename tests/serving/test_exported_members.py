"""The public surface is pinned, errors share one root, and serving never imports torch."""

from __future__ import annotations

import subprocess
import sys

import serving
from serving import errors


def test_all_is_pinned() -> None:
    assert set(serving.__all__) == {
        "AdmissionPolicy", "ArtifactSource", "Catalog", "Client", "ClientError", "Decision",
        "DirectorySource", "InvalidRequest", "Item", "LocalFallback", "ModelLoadError", "ModelRunner", "NotReady",
        "Overloaded", "RecommendRequest", "RecommendResponse", "RecommendService", "RetryPolicy",
        "ServiceConfig", "ServingError", "StoreSource", "Unauthorized", "decide", "make_source",
        "recommend_sync",
        # canary: routing, online feedback and its judgement
        "CanaryGate", "FeedbackRequest", "Judgement", "Tally", "in_canary", "judge",
    }
    for name in serving.__all__:
        assert getattr(serving, name).__module__.startswith("serving")


def test_every_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ServingError)


def test_no_torch_or_training_anywhere_in_serving() -> None:
    code = ("import sys, serving, serving.deployment, serving.cli, serving.server, "
            "serving.grpc_server, serving.client, serving.canary, serving.rollout; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('training')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_grafana_dashboard_plots_every_metric() -> None:
    import json
    from pathlib import Path

    from serving.metrics import ServingMetrics

    dash = json.loads((Path(serving.__file__).parent / "grafana" / "recdrill.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", ()))
    names = {m.name for m in ServingMetrics().registry.collect()}
    assert names and all(name in exprs for name in names), names


def test_grafana_dashboard_shows_regions() -> None:
    """The standby region's replication lag and the global entry's state are on the board."""
    import json
    from pathlib import Path

    from replication.region import LAG_METRICS

    dash = json.loads((Path(serving.__file__).parent / "grafana" / "recdrill.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", ()))
    assert LAG_METRICS and all(name in exprs for name in LAG_METRICS), LAG_METRICS
    assert 'proxy="regions_http"' in exprs
