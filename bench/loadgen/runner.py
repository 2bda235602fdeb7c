"""One open-loop load run, start to summary: :func:`run_load` → :class:`LoadResult`.

Example (against a server on 127.0.0.1:8000)::

    workload = load_workload(Path("artifact"), Path("checkpoint"))
    spec = TransportSpec("http", "http://127.0.0.1:8000")
    result = run_load(LoadConfig(spec, rate_rps=500, duration_s=10), workload)
    print(result.summary()["latency_ms"]["p99_ms"], result.valid)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench.loadgen.dispatcher import GeneratorStats
from bench.loadgen.errors import ConfigError
from bench.loadgen.generate import GeneratorJob, run_job
from bench.loadgen.multiproc import run_processes
from bench.loadgen.outcomes import Outcomes, Status
from bench.loadgen.quality import quality_of, search_quality_of
from bench.loadgen.recorder import RunHistograms, histogram_of, summarize
from bench.loadgen.schedule import make_schedule
from bench.loadgen.timeline import Phase, per_phase, per_second
from bench.loadgen.transports import TransportSpec
from bench.loadgen.workload import Workload

__all__ = ["LoadConfig", "LoadResult", "run_load", "search_summary", "validity"]

_FAILED = [int(Status.ERROR), int(Status.SHED), int(Status.TIMEOUT)]


@dataclass(frozen=True)
class LoadConfig:
    """One run: where, how fast, how long, and the generator's limits.

    ``processes > 1`` or ``pin_cpus`` runs the generators as spawned processes (process ``j``
    pinned to ``pin_cpus[j % len(pin_cpus)]``); otherwise the run is in this process.
    A run whose send-lag p99 exceeds ``max_lag_p99_ms`` is flagged invalid.
    """

    transport: TransportSpec
    rate_rps: float
    duration_s: float
    schedule: str = "constant"
    seed: int = 0
    max_in_flight: int = 1000
    warmup_s: float = 1.0
    processes: int = 1
    pin_cpus: tuple[int, ...] = ()
    max_lag_p99_ms: float = 5.0
    phases: tuple[Phase, ...] = ()

    def __post_init__(self) -> None:
        if self.processes < 1 or self.max_in_flight < 1:
            raise ConfigError(f"processes and max_in_flight must be >= 1, found "
                              f"{self.processes} and {self.max_in_flight}")


@dataclass(frozen=True, eq=False)
class LoadResult:
    """Rows, merged histograms and generator costs of one run; :meth:`summary` for JSON."""

    config: LoadConfig
    outcomes: Outcomes
    histograms: RunHistograms
    generators: tuple[GeneratorStats, ...]
    started_at: str
    invalid_reasons: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        """True when the generator kept its schedule (see :func:`validity`)."""
        return not self.invalid_reasons

    def summary(self, timeline: bool = True) -> dict[str, Any]:
        """Counts, latency (ok / service / lag / failed), quality, generator cost, timeline.

        Counts and latencies cover every request, ``quality`` the recommend answers; a run
        with searches adds ``search``: their counts, latency and Recall@10 / NDCG@10.
        """
        o, cfg = self.outcomes, self.config
        ok = int((o.status == Status.OK).sum())
        out: dict[str, Any] = {
            "started_at": self.started_at,
            "transport": cfg.transport.kind, "address": cfg.transport.address,
            "schedule": cfg.schedule, "offered_rps": cfg.rate_rps, "duration_s": cfg.duration_s,
            "offered": len(o), "ok": ok,
            "errors": o.count(Status.ERROR, Status.SHED, Status.TIMEOUT),
            "shed": o.count(Status.SHED), "timeouts": o.count(Status.TIMEOUT),
            "dropped": o.count(Status.DROPPED),
            "success_ratio": round(ok / len(o), 4) if len(o) else None,
            "goodput_rps": round(ok / cfg.duration_s, 2),
            "degraded_share": round(float(o.degraded[o.status == Status.OK].mean()), 4) if ok else None,
            "latency_ms": asdict(summarize(self.histograms.ok)),
            "service_ms": asdict(summarize(self.histograms.service)),
            "failed_ms": asdict(summarize(self.histograms.failed)),
            "lag_ms": asdict(summarize(self.histograms.lag)),
            "quality": asdict(quality_of(o.rank[(o.status == Status.OK) & ~o.searches])),
            "generator": {
                "processes": len(self.generators),
                "cpu_s": round(sum(g.cpu_s for g in self.generators), 3),
                "cpu_share": [g.cpu_share for g in self.generators],
                "cpus": [list(g.cpus) for g in self.generators],
                "max_lag_p99_ms": cfg.max_lag_p99_ms},
            "valid": self.valid, "invalid_reasons": list(self.invalid_reasons),
        }
        if o.searches.any():
            out["search"] = search_summary(o)
        if cfg.phases:
            out["phases"] = [_window(w) for w in per_phase(o, cfg.phases)]
        if timeline:
            out["timeline"] = [_window(w) for w in per_second(o, cfg.duration_s)]
        return out


def _window(w: Any) -> dict[str, Any]:
    return {**asdict(w), "success_ratio": w.success_ratio}


def search_summary(outcomes: Outcomes) -> dict[str, Any]:
    """The search requests of a run alone: counts, latency of successes from the intended
    send time, and Recall@10 / NDCG@10 of the scored answers.

    Example:
        >>> from bench.loadgen.outcomes import OutcomeBuffer, RequestKind
        >>> buf = OutcomeBuffer(np.array([0.1, 0.2]))
        >>> buf.done(0, Status.OK, 0, 0.004, 0.004); buf.searched(0, 0.5, 0.25)
        >>> buf.done(1, Status.OK, 0, 0.002, 0.002, rank=3)
        >>> s = search_summary(buf.freeze())
        >>> s["offered"], s["latency_ms"]["count"], s["quality"]["ndcg"]
        (1, 1, 0.25)
    """
    search = outcomes.searches
    ok = search & (outcomes.status == Status.OK)
    n, answered = int(search.sum()), int(ok.sum())
    return {"offered": n, "ok": answered,
            "errors": int(np.isin(outcomes.status[search], _FAILED).sum()),
            "dropped": int((outcomes.status[search] == Status.DROPPED).sum()),
            "success_ratio": round(answered / n, 4) if n else None,
            "degraded_share": (round(float(outcomes.degraded[ok].mean()), 4) if answered
                               else None),
            "latency_ms": asdict(summarize(histogram_of(outcomes.latency_us[ok]))),
            "quality": asdict(search_quality_of(outcomes.search_recall10[ok],
                                                outcomes.search_ndcg10[ok]))}


def validity(histograms: RunHistograms, generators: tuple[GeneratorStats, ...],
             max_lag_p99_ms: float) -> tuple[str, ...]:
    """Why a run cannot be trusted (empty when it can): send lag past the bound.

    A generator near 100% of its core is named too, because its lag will follow.

    Example:
        >>> from bench.loadgen.recorder import histogram_of
        >>> h = RunHistograms(*(histogram_of([1000]) for _ in range(3)), histogram_of([]))
        >>> validity(h, (), 0.5)
        ('generator lag p99 1.0 ms > bound 0.5 ms',)
    """
    reasons = []
    lag = summarize(histograms.lag)
    if lag.p99_ms is not None and lag.p99_ms > max_lag_p99_ms:
        reasons.append(f"generator lag p99 {lag.p99_ms} ms > bound {max_lag_p99_ms} ms")
    for g in generators:
        if g.cpu_share > 0.95:
            reasons.append(f"generator on cpus {list(g.cpus)} used {g.cpu_share:.0%} of a core")
    return tuple(reasons)


def run_load(config: LoadConfig, workload: Workload) -> LoadResult:
    """Run one open-loop load test; the schedule and the users replayed are fixed by ``seed``."""
    schedule = make_schedule(config.schedule, config.rate_rps, config.duration_s, config.seed)
    picks = workload.order(len(schedule), config.seed)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    base = GeneratorJob(config.transport, workload, schedule, picks, config.max_in_flight,
                        config.warmup_s)
    generators: tuple[GeneratorStats, ...]
    if config.processes == 1 and not config.pin_cpus:
        outcomes, stats = run_job(base)
        histograms, generators = RunHistograms.of(outcomes), (stats,)
    else:
        n = config.processes
        cpus = config.pin_cpus or (None,)
        jobs = [GeneratorJob(config.transport, workload, part, picks[j::n], config.max_in_flight,
                             config.warmup_s, cpus[j % len(cpus)])
                for j, part in enumerate(schedule.split(n))]
        timeout = config.warmup_s + config.duration_s + config.transport.timeout_s + 30
        outcomes, histograms, stats_list = run_processes(jobs, timeout)
        generators = tuple(stats_list)
    reasons = validity(histograms, generators, config.max_lag_p99_ms)
    return LoadResult(config, outcomes, histograms, generators, started_at, reasons)


