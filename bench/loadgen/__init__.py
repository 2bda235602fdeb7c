"""Open-loop load generator: seeded schedules, HdrHistograms from the intended send time,
per-second timeline and phases, HTTP and gRPC, answers scored against held-out items, and
held-out searches mixed in (``Workload.search_share``) scored by Recall@10 / NDCG@10.

Example::

    from bench.loadgen import LoadConfig, TransportSpec, load_workload, run_load
    workload = load_workload(artifact_dir, checkpoint_dir)
    result = run_load(LoadConfig(TransportSpec("http", "http://127.0.0.1:8000"), 300, 10), workload)
    result.summary()["latency_ms"]["p99_ms"]
"""

from __future__ import annotations

from bench.loadgen.dispatcher import GeneratorStats, run_open_loop
from bench.loadgen.errors import (
    BenchError,
    ConfigError,
    ContenderError,
    GeneratorError,
    WorkloadError,
)
from bench.loadgen.outcomes import Outcomes, RequestKind, Status
from bench.loadgen.overload import (
    Overload,
    OverloadVerdict,
    added_ms,
    answered_within,
    judge_overload,
    overload_from_summary,
)
from bench.loadgen.quality import (
    Quality,
    SearchQuality,
    quality_of,
    rank_of,
    search_quality_of,
    search_scores,
)
from bench.loadgen.recorder import LatencySummary, RunHistograms, histogram_of, summarize
from bench.loadgen.runner import LoadConfig, LoadResult, run_load
from bench.loadgen.schedule import Schedule, constant, make_schedule, poisson, rate_steps
from bench.loadgen.timeline import Phase, WindowStats, parse_phases, per_phase, per_second
from bench.loadgen.transports import Answer, Transport, TransportSpec, make_transport
from bench.loadgen.workload import (
    HeldOutQuery,
    HeldOutUser,
    Workload,
    load_search_queries,
    load_workload,
)

__all__ = [
    "Answer",
    "BenchError",
    "ConfigError",
    "ContenderError",
    "GeneratorError",
    "GeneratorStats",
    "HeldOutQuery",
    "HeldOutUser",
    "LatencySummary",
    "LoadConfig",
    "LoadResult",
    "Outcomes",
    "Overload",
    "OverloadVerdict",
    "Phase",
    "Quality",
    "RequestKind",
    "RunHistograms",
    "Schedule",
    "SearchQuality",
    "Status",
    "Transport",
    "TransportSpec",
    "WindowStats",
    "Workload",
    "WorkloadError",
    "added_ms",
    "answered_within",
    "constant",
    "histogram_of",
    "judge_overload",
    "load_search_queries",
    "load_workload",
    "make_schedule",
    "make_transport",
    "overload_from_summary",
    "parse_phases",
    "per_phase",
    "per_second",
    "poisson",
    "quality_of",
    "rank_of",
    "rate_steps",
    "run_load",
    "run_open_loop",
    "search_quality_of",
    "search_scores",
    "summarize",
]
