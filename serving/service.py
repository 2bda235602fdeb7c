"""The transport-agnostic recommend service of one replica: versions, deadlines, fallback.

HTTP (``serving.app``) and gRPC (``serving.grpc_server``) both call ``recommend``. A request is
resolved against the version in service, passed through admission control, then given to the
batched model under a deadline; if the model cannot answer in time (stalled, failed, or the
replica is past its admission limit) the fallback tier answers with ``degraded: true``.

Versions swap atomically: ``load`` fetches and verifies, loads, and probes the new version
first; only then does the reference flip, so requests in flight finish on the old runner and
a refused version never serves.

A canary (``set_canary``) is a second version, loaded the same way, that answers the requests
whose routing key (user_id, else the history) falls in its share (``serving.canary``); every
answer names its ``model_version``, and ``record_feedback`` tallies which item the user took,
per version, so the canary's online HR@10 can be judged against the stable version's.

Example:
    >>> svc = RecommendService(DirectorySource(art, pub), replica="r0", node="n0")  # doctest: +SKIP
    >>> svc.load()  # doctest: +SKIP
    >>> await svc.recommend(RecommendRequest(user_id="1"))  # doctest: +SKIP
    >>> svc.set_canary("v2", 0.1)  # doctest: +SKIP
    >>> svc.record_feedback("v2", ["i3", "i9"], "i9")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from serving.admission import AdmissionPolicy, Decision, budget_s, decide
from serving.batching import MicroBatcher, Unbatched
from serving.canary import Tally, in_canary, routing_key
from serving.errors import InvalidRequest, ModelLoadError, NoSearchModel, NotReady, Overloaded
from serving.metrics import ServingMetrics
from serving.runner import ModelRunner, Query, Ranked
from serving.schemas import RecommendRequest, SearchRequest
from serving.search import DEFAULT_BLEND, SearchQuery
from serving.source import ArtifactSource
from serving.users import UserPrivacy

__all__ = ["HIT_AT", "MAX_TALLIES", "RecommendService", "ServiceConfig"]

HIT_AT = 10  # feedback is a hit when the taken item was in the answer's top 10 (HR@10)
MAX_TALLIES = 16  # versions with feedback kept per replica; the least recently fed go first
_MAX_SERVED = 64


@dataclass(frozen=True)
class ServiceConfig:
    """Request-path tuning of one replica."""

    deadline_s: float = 1.0
    max_batch_size: int = 16
    batch_wait_s: float = 0.0
    batching: bool = True
    threads: int | None = None
    use_int8: bool = False
    search_blend: float = DEFAULT_BLEND
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    users: UserPrivacy = field(default_factory=UserPrivacy)


class RecommendService:
    """One replica's model versions and request handling; the runner is swapped by reference."""

    def __init__(self, source: ArtifactSource, *, replica: str, node: str,
                 config: ServiceConfig | None = None, metrics: ServingMetrics | None = None) -> None:
        self.source, self.replica, self.node = source, replica, node
        self.config = config or ServiceConfig()
        self.metrics = metrics or ServingMetrics()
        self._runner: ModelRunner | None = None
        self.draining = False  # stopping: not ready for new traffic, still answers what comes
        self._history: list[str] = []  # versions served, oldest first
        self._canary: tuple[ModelRunner, float] | None = None  # one reference: swapped whole
        self._served: dict[str, None] = {}  # stable and canary versions, oldest first
        self._tallies: OrderedDict[str, Tally] = OrderedDict()
        self._feedback_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="recdrill-model")
        self._in_flight = 0
        self._degraded_in_flight = 0
        self.metrics.in_flight.set_function(lambda: self._in_flight)
        self._stall_s = 0.0  # fault injection for drills: extra model time per batch
        cfg = self.config
        if not cfg.batching:
            self._batcher: Any = Unbatched(self._run_batch)
            self._search_batcher: Any = Unbatched(self._run_search_batch)
        else:
            self._batcher = MicroBatcher(self._run_batch, cfg.max_batch_size, cfg.batch_wait_s)
            self._search_batcher = MicroBatcher(self._run_search_batch, cfg.max_batch_size,
                                                cfg.batch_wait_s)

    # -- versions ---------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        return None if self._runner is None else self._runner.version

    @property
    def ready(self) -> bool:
        """Ready for new traffic: a verified version is loaded and the replica is not draining."""
        return self._runner is not None and not self.draining

    def drain(self) -> None:
        """Report not ready (``/readyz`` 503, gRPC health NOT_SERVING) so load balancers take
        this replica out, while requests that still arrive are answered."""
        self.draining = True

    @property
    def runner(self) -> ModelRunner:
        if self._runner is None:
            raise NotReady("no verified model version loaded yet; retry shortly")
        return self._runner

    @property
    def canary_version(self) -> str | None:
        """The canary's version, or None when there is no canary."""
        canary = self._canary
        return None if canary is None else canary[0].version

    @property
    def canary_share(self) -> float:
        """The canary's share of routing keys (0.0 when there is no canary)."""
        canary = self._canary
        return 0.0 if canary is None else canary[1]

    def load(self, version: str | None = None) -> str:
        """Fetch + verify, load, probe, then swap; raises ModelLoadError and keeps the old one."""
        with self._load_lock:
            name, runner, verify_s = self._fetch_and_load(version)
            if runner is self._runner:
                return name
            previous = self.version
            self._runner = runner
            self._history = [v for v in self._history if v != name] + [name]
            self._mark_served(name)
            self.metrics.set_version(name, previous, runner.load_s, verify_s)
            return name

    def set_canary(self, version: str | None, share: float = 0.0) -> str | None:
        """Serve ``version`` to ``share`` of the routing keys, or no canary (``None``).

        The version is fetched, verified, loaded and probed exactly as by ``load``; a refused
        one raises ModelLoadError and the canary stays as it was.

        Example:
            >>> svc.set_canary("v2", 0.25)  # doctest: +SKIP
            'v2'
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"canary share: expected 0..1, found {share}")
        with self._load_lock:
            if version is None:
                self._canary = None
                return None
            name, runner, verify_s = self._fetch_and_load(version)
            self._canary = (runner, share)
            self._mark_served(name)
            self.metrics.observe_load(name, runner.load_s, verify_s)
            return name

    def _fetch_and_load(self, version: str | None) -> tuple[str, ModelRunner, float]:
        """Verified, loaded and probed runner of ``version`` (the one in service if loaded)."""
        t0 = time.perf_counter()
        try:
            artifact = self.source.fetch_verified(version)
            name, verify_s = artifact.version, time.perf_counter() - t0
            loaded = self._loaded(name)
            if loaded is not None:
                return name, loaded, verify_s
            runner = ModelRunner.load(artifact, threads=self.config.threads,
                                      use_int8=self.config.use_int8, privacy=self.config.users)
            runner.probe()
        except ModelLoadError:
            self.metrics.refused.inc()
            raise
        return name, runner, verify_s

    def _loaded(self, name: str) -> ModelRunner | None:
        # A promoted canary becomes the stable runner as it is: no second load.
        canary = self._canary
        for runner in (self._runner, None if canary is None else canary[0]):
            if runner is not None and runner.version == name:
                return runner
        return None

    def _mark_served(self, name: str) -> None:
        self._served.pop(name, None)
        self._served[name] = None
        while len(self._served) > _MAX_SERVED:
            del self._served[next(iter(self._served))]

    def rollback(self) -> str:
        """Serve the version before the current one again (verified and probed anew)."""
        if len(self._history) < 2:
            raise ModelLoadError("no earlier version on this replica to roll back to")
        return self.load(self._history[-2])

    def set_stall(self, seconds: float) -> None:
        """Drills: make every model call take ``seconds`` longer (0 to stop)."""
        self._stall_s = max(0.0, seconds)

    # -- requests ---------------------------------------------------------------------------

    async def recommend(self, req: RecommendRequest, timeout_s: float | None = None
                        ) -> dict[str, Any]:
        """The answer as a JSON-ready dict; raises InvalidRequest, NotReady or Overloaded."""
        runner, query = self._route(req)
        ranked = await self._guarded(self._batcher, runner, query, runner.fallback, timeout_s)
        return self._answer(runner, ranked)

    async def search(self, req: SearchRequest, timeout_s: float | None = None
                     ) -> dict[str, Any]:
        """Search results as a JSON-ready dict, with the same deadline, admission and degraded
        tier as ``recommend``; raises NoSearchModel when the version carries no search."""
        runner, query = self._route_search(req)
        model = runner.search
        assert model is not None
        truncated = model.truncated(query.text)
        ranked = await self._guarded(self._search_batcher, runner, query, model.fallback,
                                     timeout_s)
        personalised = (query.seq is not None and not ranked.degraded
                        and self.config.search_blend > 0)
        return {**self._answer(runner, ranked), "truncated": truncated,
                "personalised": personalised}

    async def _guarded(self, batcher: Any, runner: ModelRunner, query: Any,
                       fallback: Callable[[Any], Ranked], timeout_s: float | None) -> Ranked:
        """Admission, then the batched model under a deadline; the degraded tier otherwise."""
        decision = decide(self.config.admission, self._in_flight, self._degraded_in_flight)
        if decision is Decision.SHED:
            self.metrics.shed.inc()
            raise Overloaded(f"replica {self.replica} is at its admission limit "
                             f"({self._in_flight} in flight); retry later or elsewhere",
                             self.config.admission.retry_after_s)
        if decision is Decision.DEGRADE:
            self._degraded_in_flight += 1
            try:
                return self._fallback(fallback, query, "overload")
            finally:
                self._degraded_in_flight -= 1
        self._in_flight += 1
        try:
            budget = budget_s(timeout_s, self.config.deadline_s)
            ranked: Ranked = await asyncio.wait_for(batcher.submit((runner, query)), budget)
            return ranked
        except TimeoutError:
            return self._fallback(fallback, query, "deadline")
        except Exception:  # noqa: BLE001 -- the model failed: the degraded tier still answers
            return self._fallback(fallback, query, "model-error")
        finally:
            self._in_flight -= 1

    def _route(self, req: RecommendRequest) -> tuple[ModelRunner, Query]:
        """The canary answers the keys in its share; everything else, the stable version."""
        runner, canary = self.runner, self._canary
        if (canary is not None and canary[0] is not runner
                and in_canary(routing_key(req.user_id, req.history), canary[1])):
            try:
                return canary[0], canary[0].resolve(req)
            except InvalidRequest:
                pass  # unknown to the canary's catalog: the stable version decides
        return runner, runner.resolve(req)

    def _route_search(self, req: SearchRequest) -> tuple[ModelRunner, SearchQuery]:
        """As ``_route``; a query without user or history is routed by its text."""
        runner, canary = self.runner, self._canary
        key = (routing_key(req.user_id, req.history)
               if req.user_id is not None or req.history is not None else req.query)
        if (canary is not None and canary[0] is not runner and canary[0].search is not None
                and in_canary(key, canary[1])):
            try:
                return canary[0], self._search_query(canary[0], req)
            except InvalidRequest:
                pass  # unknown to the canary's catalog: the stable version decides
        return runner, self._search_query(runner, req)

    def _search_query(self, runner: ModelRunner, req: SearchRequest) -> SearchQuery:
        if runner.search is None:
            raise NoSearchModel(f"model version {runner.version} carries no search model; "
                                "publish an artifact exported with --search")
        seq = None
        if req.user_id is not None or req.history is not None:
            seq = runner.resolve(RecommendRequest(user_id=req.user_id, history=req.history)).seq
        return SearchQuery(req.query, req.k, seq)

    def _fallback(self, fallback: Callable[[Any], Ranked], query: Any, reason: str) -> Ranked:
        self.metrics.fallbacks.labels(reason).inc()
        return fallback(query)

    def _answer(self, runner: ModelRunner, ranked: Ranked) -> dict[str, Any]:
        return {"items": runner.items_json(ranked), "model_version": runner.version,
                "degraded": ranked.degraded, "replica": self.replica, "node": self.node}

    async def _run_batch(self, items: list[tuple[ModelRunner, Query]]) -> list[Ranked]:
        self.metrics.batch_size.observe(len(items))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._score, items)

    async def _run_search_batch(self, items: list[tuple[ModelRunner, SearchQuery]]
                                ) -> list[Ranked]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._score_search, items)

    def _score(self, items: list[tuple[ModelRunner, Query]]) -> list[Ranked]:
        return self._per_version(items, lambda runner, qs: runner.score(qs))

    def _score_search(self, items: list[tuple[ModelRunner, SearchQuery]]) -> list[Ranked]:
        blend = self.config.search_blend
        return self._per_version(items, lambda runner, qs: runner.search_batch(qs, blend))

    def _per_version(self, items: list[tuple[ModelRunner, Any]],
                     run: Callable[[ModelRunner, list[Any]], list[Ranked]]) -> list[Ranked]:
        if self._stall_s:
            time.sleep(self._stall_s)
        # A swap can put two versions in one batch: score each version's share separately.
        out: list[Ranked | None] = [None] * len(items)
        for runner in {id(r): r for r, _ in items}.values():
            rows = [i for i, (r, _) in enumerate(items) if r is runner]
            for i, ranked in zip(rows, run(runner, [items[i][1] for i in rows]), strict=True):
                out[i] = ranked
        return [r for r in out if r is not None]

    # -- feedback ---------------------------------------------------------------------------

    def record_feedback(self, model_version: str, items: list[str], item_id: str) -> bool:
        """Count one answer shown, and a hit if ``item_id`` is in its top 10 (HR@10).

        Returns whether ``model_version`` is one this replica serves or served; feedback on
        other versions is counted too (it may come from another replica's answer).

        Example:
            >>> svc.record_feedback("v1", ["i4", "i7"], "i7")  # doctest: +SKIP
            True
        """
        hit = item_id in items[:HIT_AT]
        known = model_version in self._served
        with self._feedback_lock:
            tally = self._tallies.pop(model_version, Tally()) + Tally(1, int(hit))
            self._tallies[model_version] = tally
            in_service = {self.version, self.canary_version}
            while len(self._tallies) > MAX_TALLIES:
                oldest = next(v for v in self._tallies if v not in in_service)
                del self._tallies[oldest]
        # Only versions served here become label values: clients cannot grow the series.
        self.metrics.observe_feedback(model_version if known else "unknown", hit)
        return known

    def feedback_stats(self) -> dict[str, Tally]:
        """Feedback per version since this replica started (at most MAX_TALLIES versions)."""
        with self._feedback_lock:
            return dict(self._tallies)

    def feedback_report(self) -> dict[str, Any]:
        """The JSON of ``GET /v1/feedback/stats``: versions in service and every tally."""
        canary = self._canary
        return {"replica": self.replica, "stable": self.version,
                "canary": None if canary is None else canary[0].version,
                "canary_share": 0.0 if canary is None else canary[1],
                "tally": {v: {"shown": t.shown, "hits": t.hits}
                          for v, t in self.feedback_stats().items()}}

    def close(self) -> None:
        for batcher in (self._batcher, self._search_batcher):
            if isinstance(batcher, MicroBatcher):
                batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
