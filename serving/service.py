"""The transport-agnostic recommend service of one replica: versions, deadlines, fallback.

HTTP (``serving.app``) and gRPC (``serving.grpc_server``) both call ``recommend``. A request is
resolved against the version in service, passed through admission control, then given to the
batched model under a deadline; if the model cannot answer in time (stalled, failed, or the
replica is past its admission limit) the fallback tier answers with ``degraded: true``.

Versions swap atomically: ``load`` fetches and verifies, loads, and probes the new version
first; only then does the reference flip, so requests in flight finish on the old runner and
a refused version never serves.

Example:
    >>> svc = RecommendService(DirectorySource(art, pub), replica="r0", node="n0")  # doctest: +SKIP
    >>> svc.load()  # doctest: +SKIP
    >>> await svc.recommend(RecommendRequest(user_id="1"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from serving.admission import AdmissionPolicy, Decision, budget_s, decide
from serving.batching import MicroBatcher, Unbatched
from serving.errors import ModelLoadError, NotReady, Overloaded
from serving.metrics import ServingMetrics
from serving.runner import ModelRunner, Query, Ranked
from serving.schemas import RecommendRequest
from serving.source import ArtifactSource

__all__ = ["RecommendService", "ServiceConfig"]


@dataclass(frozen=True)
class ServiceConfig:
    """Request-path tuning of one replica."""

    deadline_s: float = 1.0
    max_batch_size: int = 16
    batch_wait_s: float = 0.0
    batching: bool = True
    threads: int | None = None
    use_int8: bool = False
    admission: AdmissionPolicy = AdmissionPolicy()


class RecommendService:
    """One replica's model versions and request handling; the runner is swapped by reference."""

    def __init__(self, source: ArtifactSource, *, replica: str, node: str,
                 config: ServiceConfig | None = None, metrics: ServingMetrics | None = None,
                 batcher_factory: Callable[..., Any] | None = None) -> None:
        self.source, self.replica, self.node = source, replica, node
        self.config = config or ServiceConfig()
        self.metrics = metrics or ServingMetrics()
        self._runner: ModelRunner | None = None
        self._history: list[str] = []  # versions served, oldest first
        self._load_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="recdrill-model")
        self._in_flight = 0
        self._degraded_in_flight = 0
        self.metrics.in_flight.set_function(lambda: self._in_flight)
        self._stall_s = 0.0  # fault injection for drills: extra model time per batch
        cfg = self.config
        if not cfg.batching:
            self._batcher: Any = Unbatched(self._run_batch)
        elif batcher_factory is not None:
            self._batcher = batcher_factory(self._run_batch, cfg.max_batch_size, cfg.batch_wait_s)
        else:
            self._batcher = MicroBatcher(self._run_batch, cfg.max_batch_size, cfg.batch_wait_s)

    # -- versions ---------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        return None if self._runner is None else self._runner.version

    @property
    def ready(self) -> bool:
        return self._runner is not None

    @property
    def runner(self) -> ModelRunner:
        if self._runner is None:
            raise NotReady("no verified model version loaded yet; retry shortly")
        return self._runner

    def load(self, version: str | None = None) -> str:
        """Fetch + verify, load, probe, then swap; raises ModelLoadError and keeps the old one."""
        with self._load_lock:
            t0 = time.perf_counter()
            try:
                name, path = self.source.fetch(version)
                t1 = time.perf_counter()
                if self._runner is not None and name == self._runner.version:
                    return name
                runner = ModelRunner.load(path, name, threads=self.config.threads,
                                          use_int8=self.config.use_int8)
                runner.probe()
            except ModelLoadError:
                self.metrics.refused.inc()
                raise
            previous = self.version
            self._runner = runner
            self._history = [v for v in self._history if v != name] + [name]
            self.metrics.set_version(name, previous, runner.load_s, t1 - t0)
            return name

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
        runner = self.runner
        query = runner.resolve(req)
        decision = decide(self.config.admission, self._in_flight, self._degraded_in_flight)
        if decision is Decision.SHED:
            self.metrics.shed.inc()
            raise Overloaded(f"replica {self.replica} is at its admission limit "
                             f"({self._in_flight} in flight); retry later or elsewhere",
                             self.config.admission.retry_after_s)
        if decision is Decision.DEGRADE:
            self._degraded_in_flight += 1
            try:
                return self._answer(runner, self._fallback(runner, query, "overload"))
            finally:
                self._degraded_in_flight -= 1
        self._in_flight += 1
        try:
            budget = budget_s(timeout_s, self.config.deadline_s)
            ranked = await asyncio.wait_for(self._batcher.submit((runner, query)), budget)
        except TimeoutError:
            ranked = self._fallback(runner, query, "deadline")
        except Exception:  # the model failed: the degraded tier still answers
            ranked = self._fallback(runner, query, "model-error")
        finally:
            self._in_flight -= 1
        return self._answer(runner, ranked)

    def _fallback(self, runner: ModelRunner, query: Query, reason: str) -> Ranked:
        self.metrics.fallbacks.labels(reason).inc()
        return runner.fallback(query)

    def _answer(self, runner: ModelRunner, ranked: Ranked) -> dict[str, Any]:
        return {"items": runner.items_json(ranked), "model_version": runner.version,
                "degraded": ranked.degraded, "replica": self.replica, "node": self.node}

    async def _run_batch(self, items: list[tuple[ModelRunner, Query]]) -> list[Ranked]:
        self.metrics.batch_size.observe(len(items))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._score, items)

    def _score(self, items: list[tuple[ModelRunner, Query]]) -> list[Ranked]:
        if self._stall_s:
            time.sleep(self._stall_s)
        # A swap can put two versions in one batch: score each version's share separately.
        out: list[Ranked | None] = [None] * len(items)
        for runner in {id(r): r for r, _ in items}.values():
            rows = [i for i, (r, _) in enumerate(items) if r is runner]
            for i, ranked in zip(rows, runner.score([items[i][1] for i in rows]), strict=True):
                out[i] = ranked
        return [r for r in out if r is not None]

    def close(self) -> None:
        if isinstance(self._batcher, MicroBatcher):
            self._batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
