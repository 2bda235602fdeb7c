"""Prometheus metrics of one serving process, in its own registry (scraped at ``/metrics``).

Names (all prefixed ``recdrill_``): request latency histogram and counts by route, status,
model_version and degraded; batch sizes; fallbacks by reason; shed requests; model load and
verify seconds; ``model_version_info`` (1 for the version in service); online feedback by
model_version and hit (``feedback_total``, for canary judgements). The Grafana dashboard
``serving/grafana/recdrill.json`` plots exactly these.

Example:
    >>> m = ServingMetrics()
    >>> m.observe_request("recommend", "200", "v1", False, 0.002)
    >>> b"recdrill_requests_total" in m.render()
    True
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "ServingMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
                      0.512, 1.0, 2.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServingMetrics:
    """The metric families of one process; cheap enough to update on every request."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.latency = Histogram("recdrill_request_seconds", "Request latency, server side.",
                                 ["route", "status", "model_version", "degraded"],
                                 buckets=_LATENCY_BUCKETS_S, registry=r)
        self.requests = Counter("recdrill_requests_total", "Requests answered.",
                                ["route", "status", "model_version", "degraded"], registry=r)
        self.batch_size = Histogram("recdrill_batch_size", "Requests per model call.",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.fallbacks = Counter("recdrill_fallbacks_total",
                                 "Answers from the degraded tier, by reason.", ["reason"],
                                 registry=r)
        self.shed = Counter("recdrill_shed_total", "Requests shed by admission control.",
                            registry=r)
        self.load_s = Gauge("recdrill_model_load_seconds", "Seconds to load the last version.",
                            ["model_version"], registry=r)
        self.verify_s = Gauge("recdrill_model_verify_seconds",
                              "Seconds to fetch and verify the last version.", ["model_version"],
                              registry=r)
        self.version_info = Gauge("recdrill_model_version_info",
                                  "1 for the version in service, 0 for earlier ones.",
                                  ["model_version"], registry=r)
        self.refused = Counter("recdrill_versions_refused_total",
                               "Versions refused at verification, load or probe.", registry=r)
        self.in_flight = Gauge("recdrill_in_flight", "Requests admitted to the model now.",
                               registry=r)
        self.feedback = Counter("recdrill_feedback_total",
                                "Online feedback by the answer's model_version and whether the "
                                "taken item was in its top 10.", ["model_version", "hit"],
                                registry=r)

    def observe_request(self, route: str, status: str, version: str, degraded: bool,
                        seconds: float) -> None:
        labels = (route, status, version, "true" if degraded else "false")
        self.latency.labels(*labels).observe(seconds)
        self.requests.labels(*labels).inc()

    def set_version(self, version: str, previous: str | None, load_s: float,
                    verify_s: float) -> None:
        if previous is not None and previous != version:
            self.version_info.labels(previous).set(0)
        self.version_info.labels(version).set(1)
        self.observe_load(version, load_s, verify_s)

    def observe_load(self, version: str, load_s: float, verify_s: float) -> None:
        self.load_s.labels(version).set(load_s)
        self.verify_s.labels(version).set(verify_s)

    def observe_feedback(self, version: str, hit: bool) -> None:
        self.feedback.labels(version, "true" if hit else "false").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
