"""Serving stage: the recommender on Ray Serve over HTTP and gRPC, with failover.

Each replica runs a Ray-free ``ModelRunner`` (onnxruntime only; never torch) behind its own
HTTP + gRPC entry server; Ray Serve places, restarts and reconfigures the replicas. Clients
(``Client``) hold several endpoints and retry on the next one; every replica answers from the
fallback tier (``degraded: true``) when its model cannot answer in time. A new version can
run as a canary on a share of the traffic (``serving.canary``: routing and the feedback
judgement; ``serving.rollout``: the automatic rollback, which needs Ray).

Example:
    >>> from serving import Client, RecommendRequest  # doctest: +SKIP
    >>> async with Client(["http://127.0.0.1:8100"]) as c:  # doctest: +SKIP
    ...     print((await c.recommend(RecommendRequest(user_id="1", k=5))).items)

Ray is imported only by ``serving.deployment`` and ``serving.cli`` (and by ``serving.rollout``
when it acts), never here.
"""

from __future__ import annotations

from serving.admission import AdmissionPolicy, Decision, decide
from serving.canary import CanaryGate, Judgement, Tally, in_canary, judge
from serving.catalog import Catalog
from serving.client import Client, recommend_sync
from serving.errors import (
    ClientError,
    InvalidRequest,
    ModelLoadError,
    NotReady,
    Overloaded,
    ServingError,
    Unauthorized,
)
from serving.local_fallback import LocalFallback
from serving.retry import RetryPolicy
from serving.runner import ModelRunner
from serving.schemas import FeedbackRequest, Item, RecommendRequest, RecommendResponse
from serving.service import RecommendService, ServiceConfig
from serving.source import ArtifactSource, DirectorySource, StoreSource, make_source

__all__ = [
    "AdmissionPolicy",
    "ArtifactSource",
    "CanaryGate",
    "Catalog",
    "Client",
    "ClientError",
    "Decision",
    "DirectorySource",
    "FeedbackRequest",
    "InvalidRequest",
    "Item",
    "Judgement",
    "LocalFallback",
    "ModelLoadError",
    "ModelRunner",
    "NotReady",
    "Overloaded",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendService",
    "RetryPolicy",
    "ServiceConfig",
    "ServingError",
    "StoreSource",
    "Tally",
    "Unauthorized",
    "decide",
    "in_canary",
    "judge",
    "make_source",
    "recommend_sync",
]
