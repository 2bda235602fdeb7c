"""A drill scenario (YAML), in Chaos Toolkit's vocabulary: steady-state hypothesis (SLOs),
load, method (faults at times, with targets and blast radius), abort conditions, rollbacks.

These pydantic models are the contract: the loader (``drills.loader``) turns YAML into them
with errors that name the file, line and field; the runner executes them; ``drills.slo``
judges them. Every field has a description; units are in the names.

Example:
    >>> s = Scenario.model_validate({"title": "t", "load": {"rate_rps": 50, "duration_s": 20},
    ...     "method": [{"fault": "kill-replica", "at_s": 8}],
    ...     "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 0.999}]}})
    >>> s.fault_names(), s.phase_names()
    (['kill-replica'], ['baseline', 'kill-replica', 'recovery', 'whole'])
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "FAULT_KINDS",
    "P99SLO",
    "ROLLBACKS",
    "SLO",
    "AbortCondition",
    "BlastRadius",
    "ClusterShape",
    "DegradedShareSLO",
    "FactSLO",
    "FaultSpec",
    "LoadSpec",
    "NdcgSLO",
    "RecoverySLO",
    "Scenario",
    "SearchNdcgSLO",
    "SteadyState",
    "SuccessRatioSLO",
    "TargetSpec",
]

# fault kind -> what it targets (the injectors live in drills.faults, same names)
FAULT_KINDS: dict[str, str] = {
    "kill-replica": "replicas",
    "stall-replica": "replicas",
    "kill-node": "nodes",
    "kill-raylet": "nodes",
    "kill-controller": "controller",
    "kill-head": "head",
    "kill-frontdoor": "frontdoor",
    "corrupt-checkpoint": "stores",
    "delete-primary-store": "primary",
    "bad-model": "cluster",
    "bad-search": "cluster",
    "overload": "load",
    "kill-region": "region",
    "restart-region": "region",
    "publish-region": "region",
}
ROLLBACKS = ("resume-replicas", "restart-nodes", "repair-stores", "restore-primary-store",
             "restore-version")
SPECIAL_PHASES = ("baseline", "faults", "recovery", "whole")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterShape(_Strict):
    """The embedded cluster a drill starts when no RAY_ADDRESS is given."""

    workers: int = Field(2, ge=1, le=8, description="Worker nodes beside the head (1 CPU each).")
    replicas: int = Field(2, ge=1, le=8, description="Model replicas (at most one per node).")
    w: int = Field(2, ge=1, description="Verified node copies a publish needs before commit.")
    regions: int = Field(1, ge=1, le=2, description="2: two regions, each its own cluster of "
                         "this shape with its own stores and front door, behind one global "
                         "entry (region drills).")
    region_mode: Literal["async", "sync"] = Field(
        "async", description="Cross-region replication: async (publish returns after the local "
        "quorum, shipped in the background) or sync (served only once the peer region holds "
        "it).")
    gcs_ft: bool = Field(False, description="GCS fault tolerance: the head keeps the cluster's "
                         "state in a Redis (redis-server, from apt) so it can die and come back; "
                         "the head then hosts no replica.")

    @model_validator(mode="after")
    def _fits(self) -> ClusterShape:
        if self.gcs_ft and self.replicas > self.workers:
            raise ValueError(f"with gcs_ft the head hosts no replica: replicas={self.replicas} "
                             f"need at least as many workers (found {self.workers})")
        return self


class LoadSpec(_Strict):
    """Open-loop load during the whole drill (``bench.loadgen``)."""

    rate_rps: float | None = Field(None, gt=0, le=5000, description="Offered requests/s.")
    rate_fraction: float | None = Field(None, gt=0, le=1.5, description="Offered rate as a "
                                        "fraction of the saturation measured before the drill.")
    protocol: Literal["http", "grpc"] = Field("http", description="Wire protocol.")
    client: Literal["plain", "recdrill-client"] = Field(
        "plain", description="plain: one attempt, no retries (what curl or any client sees); "
        "recdrill-client: serving.client with retries and hedging (a second view).")
    via: Literal["frontdoor", "replicas"] = Field(
        "frontdoor", description="frontdoor: the one HTTP / gRPC address of recdrill's front "
        "door (HAProxy, health-checked, retries once elsewhere); replicas: the replicas' own "
        "addresses, as a client without a front door sees them.")
    addresses: Literal["all", "first"] = Field(
        "all", description="With via: replicas — all: round-robin over every replica address "
        "(like DNS round robin); first: the first replica's address only.")
    duration_s: float = Field(..., gt=0, le=3600, description="Length of the measured run.")
    seed: int = Field(0, description="Seeds the schedule, the users replayed and target picks.")
    timeout_s: float = Field(2.0, gt=0, le=30, description="Client timeout per request.")
    retries: int = Field(2, ge=0, le=5, description="recdrill-client only: retries per request.")
    hedge_after_s: float | None = Field(None, gt=0, description="recdrill-client only: send a "
                                        "hedged copy after this long.")
    feedback: bool = Field(False, description="Also replay each answered user's held-out item "
                           "as feedback (online quality for canaries).")
    search_share: float = Field(0.0, ge=0, le=1, description="Share of the requests that are "
                                "held-out searches (POST /v1/search, gRPC Search), scored by "
                                "Recall@10 / NDCG@10; needs an artifact that carries search.")

    @model_validator(mode="after")
    def _one_rate(self) -> LoadSpec:
        if (self.rate_rps is None) == (self.rate_fraction is None):
            raise ValueError("give exactly one of rate_rps or rate_fraction")
        if self.feedback and (self.protocol, self.client) != ("http", "plain"):
            raise ValueError("feedback replay runs with protocol http and client plain, found "
                             f"{self.protocol} / {self.client}")
        return self


class BlastRadius(_Strict):
    """How many of the selected targets a fault hits: one, a count, or a percentage."""

    count: int | None = Field(None, ge=1, description="Exactly this many targets.")
    percent: float | None = Field(None, gt=0, le=100, description="This share of the targets "
                                  "(rounded up, at least one).")

    @model_validator(mode="after")
    def _at_most_one(self) -> BlastRadius:
        if self.count is not None and self.percent is not None:
            raise ValueError("give at most one of count or percent")
        return self

    def size(self, available: int) -> int:
        """How many of ``available`` targets are hit.

        Example:
            >>> BlastRadius(percent=50).size(3), BlastRadius().size(3)
            (2, 1)
        """
        if self.count is not None:
            return min(self.count, available)
        if self.percent is not None:
            return min(available, max(1, -(-int(self.percent * available) // 100)))
        return min(1, available)


class TargetSpec(_Strict):
    """Which of the fault's kind of targets to pick (seeded), and how many."""

    select: Literal["random", "first", "last"] = Field("random", description="Pick order.")
    blast_radius: BlastRadius = Field(default_factory=BlastRadius,
                                      description="How many targets (default one).")


class FaultSpec(_Strict):
    """One fault of the method: what, when (seconds from the load's start), on what."""

    fault: str = Field(..., description=f"One of {sorted(FAULT_KINDS)}.")
    name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]*$",
                             description="Phase name of this fault (default: the fault kind, "
                             "numbered when repeated).")
    at_s: float = Field(..., ge=0, description="When to inject, seconds from the load's start.")
    duration_s: float = Field(10.0, gt=0, description="How long the fault is live and judged "
                              "as 'during' (stall time, overload time, the window after a kill).")
    target: TargetSpec = Field(default_factory=TargetSpec, description="Target selection.")
    mode: str | None = Field(None, description="Variant: corrupt-checkpoint corrupt|tamper|"
                             "delete; the region (primary|standby) of a region fault; "
                             "overload factor via 'factor'.")
    factor: float = Field(3.0, gt=1, le=20, description="overload: offered rate x factor; "
                          "bad-search: norm of the noise added to each unit item embedding.")

    @model_validator(mode="after")
    def _known(self) -> FaultSpec:
        if self.fault not in FAULT_KINDS:
            raise ValueError(f"fault {self.fault!r} is unknown; expected one of "
                             f"{sorted(FAULT_KINDS)}")
        regions = ("primary", "standby")
        modes = {"corrupt-checkpoint": ("corrupt", "tamper", "delete"),
                 "kill-region": regions, "restart-region": regions, "publish-region": regions}
        allowed = modes.get(self.fault)
        if self.mode is not None and (allowed is None or self.mode not in allowed):
            raise ValueError(f"mode {self.mode!r} is not valid for {self.fault}; expected "
                             f"{list(allowed) if allowed else 'no mode'}")
        return self

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s


class _SLOBase(_Strict):
    name: str | None = Field(None, description="Name in the report (default: derived).")
    phases: tuple[str, ...] = Field(("baseline", "faults", "recovery"), min_length=1,
                                    description="Phases judged: baseline, faults (each fault's "
                                    "window), a fault's name, recovery, whole.")


class SuccessRatioSLO(_SLOBase):
    """ok / offered in each phase is at least ``min``."""

    kind: Literal["success_ratio"]
    min: float = Field(..., ge=0, le=1, description="Lowest acceptable success ratio.")


class P99SLO(_SLOBase):
    """p99 latency of successes: at most ``max_ms``, and/or ``max_ratio`` x the baseline p99."""

    kind: Literal["p99_ms"]
    max_ms: float | None = Field(None, gt=0, description="Absolute p99 bound in ms.")
    max_ratio: float | None = Field(None, gt=0, description="Bound relative to baseline p99.")

    @model_validator(mode="after")
    def _some_bound(self) -> P99SLO:
        if self.max_ms is None and self.max_ratio is None:
            raise ValueError("give max_ms, max_ratio or both")
        return self


class NdcgSLO(_SLOBase):
    """NDCG@10 of answered requests is at least ``min_ratio`` x the baseline's."""

    kind: Literal["ndcg10"]
    min_ratio: float = Field(..., gt=0, le=2, description="Fraction of the baseline NDCG@10.")


class SearchNdcgSLO(_SLOBase):
    """NDCG@10 of answered held-out searches is at least ``min_ratio`` x the baseline's
    (needs ``load.search_share`` > 0)."""

    kind: Literal["search_ndcg10"]
    min_ratio: float = Field(..., gt=0, le=2, description="Fraction of the baseline search "
                             "NDCG@10.")


class DegradedShareSLO(_SLOBase):
    """Share of successful answers given by the fallback tier is at most ``max``."""

    kind: Literal["degraded_share"]
    max: float = Field(..., ge=0, le=1, description="Highest acceptable degraded share.")


class RecoverySLO(_SLOBase):
    """RTO: from each fault's start until ``window_s`` consecutive seconds each have success
    ≥ ``success_min`` (and p99 ≤ ``p99_ms`` when given) is at most ``max_s``."""

    kind: Literal["recovery_s"]
    max_s: float = Field(..., gt=0, description="Longest acceptable recovery, seconds.")
    success_min: float = Field(0.999, ge=0, le=1, description="Steady-state success per second.")
    window_s: int = Field(3, ge=1, description="Consecutive good seconds that count as regained.")
    p99_ms: float | None = Field(None, gt=0, description="Also require p99 ≤ this per second.")
    phases: tuple[str, ...] = Field(("faults",), min_length=1,
                                    description="Faults whose recovery is judged.")


class FactSLO(_SLOBase):
    """A fact a fault recorded with its proof (e.g. ``rpo_versions``, ``publish_resume_s``,
    ``refused_everywhere``, ``rollback_s``, ``capacity_back_s``) is within bounds."""

    kind: Literal["fact"]
    fact: str = Field(..., description="Key in a fault's recorded facts.")
    max: float | None = Field(None, description="Highest acceptable value.")
    min: float | None = Field(None, description="Lowest acceptable value.")
    equals: bool | int | float | str | None = Field(None, description="Required exact value.")
    phases: tuple[str, ...] = Field(("faults",), min_length=1,
                                    description="Faults whose facts are judged.")

    @model_validator(mode="after")
    def _some_bound(self) -> FactSLO:
        if self.max is None and self.min is None and self.equals is None:
            raise ValueError("give max, min or equals")
        return self


SLO = Annotated[SuccessRatioSLO | P99SLO | NdcgSLO | SearchNdcgSLO | DegradedShareSLO
                | RecoverySLO | FactSLO, Field(discriminator="kind")]


class SteadyState(_Strict):
    """The hypothesis: SLOs that must hold before, during and after the faults."""

    title: str = Field("the service keeps answering, fast and well",
                       description="What the hypothesis claims, in words.")
    slos: tuple[SLO, ...] = Field(..., min_length=1, description="Checks, each per phase.")


class AbortCondition(_Strict):
    """Stop early when the per-second success ratio stays under ``success_below`` for
    ``for_s`` consecutive seconds (rollbacks still run)."""

    success_below: float = Field(..., gt=0, le=1, description="Per-second success threshold.")
    for_s: int = Field(..., ge=1, description="Consecutive seconds under it.")


class Scenario(_Strict):
    """A whole drill."""

    title: str = Field(..., min_length=1, description="Short name (the catalog key).")
    description: str = Field("", description="What this drill proves, in a sentence or two.")
    tags: tuple[str, ...] = Field((), description="Free labels.")
    cluster: ClusterShape = Field(default_factory=ClusterShape,
                                  description="Embedded cluster shape (ignored with RAY_ADDRESS).")
    load: LoadSpec = Field(..., description="The open-loop load.")
    steady_state_hypothesis: SteadyState = Field(..., description="SLOs.")
    method: tuple[FaultSpec, ...] = Field(..., min_length=1, description="Faults, by time.")
    abort: tuple[AbortCondition, ...] = Field((), description="Stop-early conditions.")
    rollbacks: tuple[str, ...] = Field(ROLLBACKS, description=f"Always run, also after an "
                                       f"abort or an error; any of {list(ROLLBACKS)}.")

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        for fault in self.method:
            if fault.end_s > self.load.duration_s:
                raise ValueError(f"fault {fault.fault} at_s={fault.at_s} + duration_s="
                                 f"{fault.duration_s} runs past the end of the load "
                                 f"(duration_s={self.load.duration_s})")
        if any(f.fault == "bad-model" for f in self.method) and not self.load.feedback:
            raise ValueError("bad-model is judged by online feedback: set load.feedback: true")
        if any(f.fault == "bad-search" for f in self.method) and not self.load.search_share:
            raise ValueError("bad-search breaks search only: set load.search_share > 0 so "
                             "searches are sent and scored")
        if (any(isinstance(s, SearchNdcgSLO) for s in self.steady_state_hypothesis.slos)
                and self.load.search_share == 0):
            raise ValueError("a search_ndcg10 SLO judges held-out searches: set "
                             "load.search_share above 0 (e.g. 0.2)")
        first = min(f.at_s for f in self.method)
        if first < 3:
            raise ValueError(f"the first fault at_s={first} leaves under 3 s of baseline; "
                             "start it at 3 s or later")
        names = self.fault_names()
        if len(set(names)) != len(names):
            raise ValueError(f"fault names must be unique, found {names}")
        if self.cluster.replicas > self.cluster.workers + 1:
            raise ValueError(f"replicas={self.cluster.replicas} do not fit on "
                             f"{self.cluster.workers + 1} nodes (one replica per node)")
        if self.cluster.w > self.cluster.workers + 1:
            raise ValueError(f"w={self.cluster.w} is more than the {self.cluster.workers + 1} "
                             "nodes")
        region_faults = {f.fault for f in self.method if FAULT_KINDS[f.fault] == "region"}
        other = {f.fault for f in self.method if FAULT_KINDS[f.fault] not in ("region", "load")}
        if region_faults and self.cluster.regions < 2:
            raise ValueError(f"{sorted(region_faults)} need two regions: set cluster.regions: 2")
        if self.cluster.regions > 1 and other:
            raise ValueError(f"a two-region drill runs region faults only, found {sorted(other)}")
        if self.cluster.regions > 1 and self.load.via != "frontdoor":
            raise ValueError("a two-region drill loads the global entry: load.via: frontdoor")
        for rollback in self.rollbacks:
            if rollback not in ROLLBACKS:
                raise ValueError(f"rollback {rollback!r} is unknown; expected {list(ROLLBACKS)}")
        known = set(SPECIAL_PHASES) | set(names)
        for slo in self.steady_state_hypothesis.slos:
            for phase in slo.phases:
                if phase not in known:
                    raise ValueError(f"SLO {slo.kind} names phase {phase!r}; expected one of "
                                     f"{sorted(known)}")
        return self

    def scaled(self, factor: float) -> Scenario:
        """The same drill with the load and every fault's time and length times ``factor``
        (SLO limits unchanged): a shortened run for CI or a quick look.

        Example:
            >>> s = Scenario.model_validate({"title": "t", "load": {"rate_rps": 5,
            ...     "duration_s": 40}, "method": [{"fault": "kill-node", "at_s": 10}],
            ...     "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 1}]}})
            >>> s.scaled(0.5).method[0].at_s, s.scaled(0.5).load.duration_s
            (5.0, 20.0)
        """
        data = self.model_dump()
        data["load"]["duration_s"] *= factor
        for fault in data["method"]:
            fault["at_s"] *= factor
            fault["duration_s"] *= factor
        return Scenario.model_validate(data)

    def fault_names(self) -> list[str]:
        """Each fault's phase name: its ``name``, else its kind, numbered when repeated."""
        counts: dict[str, int] = {}
        for f in self.method:
            counts[f.fault] = counts.get(f.fault, 0) + 1
        seen: dict[str, int] = {}
        out = []
        for f in self.method:
            if f.name:
                out.append(f.name)
                continue
            seen[f.fault] = seen.get(f.fault, 0) + 1
            out.append(f.fault if counts[f.fault] == 1 else f"{f.fault}-{seen[f.fault]}")
        return out

    def phase_names(self) -> list[str]:
        """Every phase a report shows, in time order."""
        return ["baseline", *self.fault_names(), "recovery", "whole"]
