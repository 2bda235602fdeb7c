"""Prometheus metrics of one serving process, in its own registry (scraped at ``/metrics``).

Names (all prefixed ``recdrill_``): request latency histogram and counts by route, protocol,
code, model_version and degraded; batch sizes; fallbacks by reason; shed requests; model load
and verify seconds; ``model_version_info`` (one series, value 1, for the version in service);
online feedback by model_version and hit (``feedback_total``, for canary judgements). The
Grafana dashboard ``serving/grafana/recdrill.json`` plots exactly these.

Request labels: ``protocol`` is ``http`` or ``grpc``; ``code`` is what the caller received, the
HTTP status as digits (``"200"``, ``"503"``) or the gRPC status name (``"OK"``,
``"INVALID_ARGUMENT"``, ``"INTERNAL"``). One label for both keeps ``sum by (code)`` whole, and
the two vocabularies never overlap: ``{protocol="http", code=~"5.."}`` selects HTTP's server
errors, ``{protocol="grpc", code!="OK"}`` every failed gRPC call (``code!~"OK|INVALID_ARGUMENT"``
leaves out the caller's own errors, as 4xx are left out of HTTP's).

Example:
    >>> m = ServingMetrics()
    >>> m.observe_request("recommend", "grpc", "OK", "v1", False, 0.002)
    >>> b'protocol="grpc"' in m.render()
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

__all__ = ["CONTENT_TYPE", "PROTOCOLS", "ServingMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
                      0.512, 1.0, 2.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_REQUEST_LABELS = ("route", "protocol", "code", "model_version", "degraded")
PROTOCOLS = ("http", "grpc")


class ServingMetrics:
    """The metric families of one process; cheap enough to update on every request."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.latency = Histogram("recdrill_request_seconds", "Request latency, server side.",
                                 _REQUEST_LABELS, buckets=_LATENCY_BUCKETS_S, registry=r)
        self.requests = Counter("recdrill_requests_total", "Requests answered.",
                                _REQUEST_LABELS, registry=r)
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
                                  "1, labelled with the version in service; earlier "
                                  "versions' series are removed.", ["model_version"], registry=r)
        self._in_service: str | None = None
        self.refused = Counter("recdrill_versions_refused_total",
                               "Versions refused at verification, load or probe.", registry=r)
        self.in_flight = Gauge("recdrill_in_flight", "Requests admitted to the model now.",
                               registry=r)
        self.feedback = Counter("recdrill_feedback_total",
                                "Online feedback by the answer's model_version and whether the "
                                "taken item was in its top 10.", ["model_version", "hit"],
                                registry=r)

    def observe_request(self, route: str, protocol: str, code: str, version: str,
                        degraded: bool, seconds: float) -> None:
        """One answered request; ``code`` as the caller saw it (see the module docstring)."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {PROTOCOLS}, found {protocol!r}")
        labels = (route, protocol, code, version, "true" if degraded else "false")
        self.latency.labels(*labels).observe(seconds)
        self.requests.labels(*labels).inc()

    def set_version(self, version: str, previous: str | None, load_s: float,
                    verify_s: float) -> None:
        """``version`` is in service: its info series is 1 and the one it replaced is gone,
        so ``sum(recdrill_model_version_info)`` is 1 per process."""
        self.version_info.labels(version).set(1)  # set first: no scrape sees zero series
        for old in {previous, self._in_service} - {None, version}:
            try:
                self.version_info.remove(old)
            except KeyError:  # never set here (another process's version)
                pass
        self._in_service = version
        self.observe_load(version, load_s, verify_s)

    def observe_load(self, version: str, load_s: float, verify_s: float) -> None:
        self.load_s.labels(version).set(load_s)
        self.verify_s.labels(version).set(verify_s)

    def observe_feedback(self, version: str, hit: bool) -> None:
        self.feedback.labels(version, "true" if hit else "false").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
