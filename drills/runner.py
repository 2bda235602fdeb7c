"""Run one drill: set up the system, baseline → faults → recovery under open-loop load, judge
every SLO as the scenario's client saw it, always roll back, write the report.

The load runs in its own process (``bench.loadgen``), started once for the whole drill, so
its timing is not disturbed by the driver's Ray calls; it streams per-second counts back for
progress and abort conditions. Each fault runs in its own thread at its time (seconds from the
load's start) and records its proof. Rollbacks run in ``finally``: after success, an abort,
an exception or Ctrl-C.

Example:
    >>> journal = run_drill(load_scenario("replica-kill"), RunOptions(Path("runs/d"), inputs))  # doctest: +SKIP
    >>> journal["held"], journal["breach"]  # doctest: +SKIP
    (False, 'success ratio >= 0.999 broke in kill-node: 0.9071 (...)')
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from bench.loadgen.errors import WorkloadError
from bench.loadgen.generate import GeneratorJob
from bench.loadgen.multiproc import run_processes
from bench.loadgen.outcomes import Outcomes, Status
from bench.loadgen.recorder import summarize
from bench.loadgen.runner import search_summary
from bench.loadgen.schedule import Schedule
from bench.loadgen.timeline import Phase, WindowStats, per_phase, per_second
from bench.loadgen.transports import TransportSpec
from bench.loadgen.workload import HeldOutQuery, Workload, load_search_queries, load_workload
from drills import plan, slo
from drills.artifacts import derive_version
from drills.audit import drill_finished, drill_started
from drills.errors import DrillError, EnvironmentError_
from drills.faults import FAULTS, Damage, FaultContext, FaultRecord
from drills.region_faults import REGION_FAULTS
from drills.regions import open_regions
from drills.release_faults import RELEASE_FAULTS
from drills.scenario import RecoverySLO, Scenario
from drills.system import DrillInputs, System, open_system, remove_tree

__all__ = ["RunOptions", "drill_schedule", "run_drill", "search_queries", "with_searches"]

console = Console(stderr=True, width=120)


@dataclass(frozen=True)
class RunOptions:
    """Where the report goes, what is served, and which cluster (None: embedded)."""

    out: Path
    inputs: DrillInputs
    ray_address: str | None = None
    progress: bool = True
    keep_work: bool = False
    audit_log: Path | None = None  # None: security.paths.audit_log_path()
    actor: str | None = None  # who runs it (an operator token's name; None: the OS user)


def search_queries(scenario: Scenario, artifact: Path) -> tuple[HeldOutQuery, ...]:
    """The held-out test queries a drill with ``load.search_share`` > 0 sends (none without);
    refuses, before anything starts, an artifact that carries no search.

    Example:
        >>> s = Scenario.model_validate({"title": "t", "load": {"rate_rps": 5, "duration_s": 20},
        ...     "method": [{"fault": "kill-replica", "at_s": 4}],
        ...     "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 1}]}})
        >>> search_queries(s, Path("no-such-artifact"))
        ()
    """
    if scenario.load.search_share == 0:
        return ()
    try:
        return load_search_queries(artifact, "test")
    except WorkloadError as exc:
        raise EnvironmentError_(f"scenario {scenario.title} sends "
                                f"{scenario.load.search_share:.0%} searches (load.search_share) "
                                f"but cannot score them: {exc}") from exc


def with_searches(workload: Workload, searches: tuple[HeldOutQuery, ...], share: float
                  ) -> Workload:
    """``workload`` sending ``share`` of its requests as ``searches`` (unchanged at 0).

    Example:
        >>> from bench.loadgen.workload import HeldOutUser
        >>> w = Workload((HeldOutUser("u", ("a",), "b"),))
        >>> with_searches(w, (HeldOutQuery("q", ("i",)),), 0.3).search_share
        0.3
    """
    return replace(workload, searches=searches, search_share=share) if share else workload


def _iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def drill_schedule(rate_rps: float, duration_s: float,
                   overloads: list[tuple[float, float, float]]) -> Schedule:
    """Evenly spaced sends at ``rate_rps``, times ``factor`` inside each overload window
    ``(start_s, end_s, factor)``.

    Example:
        >>> s = drill_schedule(2, 4, [(1, 2, 3)])
        >>> s.offsets_s.round(3).tolist()
        [0.0, 0.5, 1.0, 1.167, 1.333, 1.5, 1.667, 1.833, 2.0, 2.5, 3.0, 3.5]
    """
    cuts = sorted({0.0, duration_s, *(t for s, e, _ in overloads for t in (s, e)
                                      if 0 < t < duration_s)})
    parts = []
    for a, b in itertools.pairwise(cuts):
        rate = rate_rps * max([f for s, e, f in overloads if s <= a < e], default=1.0)
        n = round((b - a) * rate)
        parts.append(a + np.arange(n, dtype=np.float64) / rate)
    offsets = np.concatenate(parts) if parts else np.empty(0)
    return Schedule(offsets, rate_rps, duration_s, "constant")


class _Journal:
    """Events, thread-safe, stamped with wall time and seconds from the load's start."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.start_mono: float | None = None
        self._lock = threading.Lock()

    def log(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        t = None if self.start_mono is None else round(time.monotonic() - self.start_mono, 3)
        with self._lock:
            self.events.append({"t_s": t, "at": _iso(), "kind": kind, "message": message,
                                "data": data or {}})
        console.print(f"[dim]{'' if t is None else f'{t:7.2f}s'}[/] [bold]{kind}[/] {message}")


class _Live:
    """Per-second counts streamed from the generator; decides aborts."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rows: dict[int, dict[str, int]] = {}
        self.aborted_at: int | None = None
        self.abort_reason: str | None = None

    def update(self, rows: dict[int, dict[str, int]]) -> None:
        self.rows = rows
        if self.aborted_at is not None or not self.scenario.abort:
            return
        settled = [_live_window(r) for _, r in sorted(rows.items())
                   if r["offered"] and r["finished"] == r["offered"]]
        cond = slo.abort_due(settled, self.scenario.abort)
        if cond is not None:
            self.aborted_at = int(settled[-1].start_s) + 1
            self.abort_reason = (f"success under {cond.success_below:.0%} for {cond.for_s} s "
                                 f"(up to second {self.aborted_at})")

    def last_settled(self) -> tuple[int, float] | None:
        done = [(s, r) for s, r in sorted(self.rows.items())
                if r["offered"] and r["finished"] == r["offered"]]
        if not done:
            return None
        s, r = done[-1]
        return s, r["ok"] / r["offered"]


def _live_window(r: dict[str, int]) -> WindowStats:
    s = r["second"]
    return WindowStats(str(s), float(s), float(s + 1), r["offered"], r["ok"],
                       r["finished"] - r["ok"], 0, 0, 0, r["degraded"], float(r["ok"]),
                       None, None, None, None, None, 0)


def step_kind(passed: list[bool]) -> str:
    """A step is a refinement once a passing and a failing rate bracket the saturation (as
    ``bench.suite`` counts them), else part of the search.

    Example:
        >>> step_kind([True, True]), step_kind([False]), step_kind([True, False])
        ('search', 'search', 'refine')
    """
    return "refine" if set(passed) == {True, False} else "search"


def measure_saturation(spec: TransportSpec, workload: Workload, start_rps: float = 100.0,
                       max_rps: float = 3200.0, step_s: float = 3.0) -> dict[str, Any]:
    """Step the offered rate (x2, then one bisection) until p99 > 100 ms or success < 99%;
    the saturation is the goodput of the highest passing step (``bench.loadgen.saturation``)."""
    from bench.loadgen.runner import LoadConfig, run_load
    from bench.loadgen.saturation import (
        SLO,
        Step,
        next_rate,
        saturation,
        step_from_summary,
        step_passes,
    )

    slo, steps = SLO(), list[Step]()
    while (rate := next_rate(steps, slo, start_rps, 2.0, max_rps, refine=1)) is not None:
        kind = step_kind([step_passes(s, slo) for s in steps])
        result = run_load(LoadConfig(spec, rate, step_s, warmup_s=0.5, max_lag_p99_ms=50.0),
                          workload)
        steps.append(step_from_summary(result.summary(timeline=False), kind))
    best = saturation(steps, slo)
    if best is None:
        raise DrillError(f"no offered rate from {start_rps:g} req/s down passed p99 <= "
                         f"{slo.p99_ms:g} ms with success >= {slo.min_success:.0%}")
    return {"goodput_rps": best.goodput_rps, "offered_rps": best.offered_rps,
            "steps": [asdict(s) for s in steps]}


def _transport(sud: System, scenario: Scenario) -> TransportSpec:
    load = scenario.load
    kind = load.protocol if load.client == "plain" else f"client-{load.protocol}"
    plain = load.client == "plain"
    return TransportSpec(kind, tuple(sud.addresses(load.protocol, load.addresses, load.via)),
                         timeout_s=load.timeout_s, retries=0 if plain else load.retries,
                         hedge_after_s=None if plain else load.hedge_after_s,
                         feedback=load.feedback)


def _window(w: WindowStats) -> dict[str, Any]:
    return {**asdict(w), "success_ratio": w.success_ratio}


def _derive(sud: System, inputs: DrillInputs, root: Path) -> Callable[..., Path] | None:
    if inputs.private_key is None:
        return None
    private = inputs.private_key

    def make(tag: str, mutate: Callable[[Path], None] | None = None) -> Path:
        version = f"{sud.version}-{tag}-{int(time.time())}"
        return derive_version(inputs.artifact, root / "derived", version, private,
                              inputs.public_key, mutate)

    return make


def _rollbacks(scenario: Scenario, sud: System, damage: Damage, journal: _Journal) -> None:
    """Undo what the faults broke, each step logged; never raises."""
    import psutil
    import ray

    steps = set(scenario.rollbacks)
    if "resume-replicas" in steps:
        for pid in sorted(damage.stopped_pids):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).resume()
            journal.log("rollback", f"SIGCONT replica pid {pid}")
    if not ray.is_initialized() and (damage.killed_nodes or damage.touched_stores):
        journal.log("rollback", "nodes and stores not restored: the driver lost the cluster")
        return
    if "restart-nodes" in steps:
        for node_id in damage.killed_nodes:
            try:
                new = sud.restart_node()
                journal.log("rollback", f"node {node_id[:12]} replaced by a new worker "
                            f"{new[:12]}", {"killed": node_id, "new": new})
            except DrillError as exc:
                journal.log("rollback", f"node {node_id[:12]} not restarted: {exc}")
    lost = damage.lost_primary
    if ("restore-primary-store" in steps and lost is not None and lost.exists()
            and not sud.primary_dir.exists()):
        lost.rename(sud.primary_dir)
        journal.log("rollback", f"primary store put back at {sud.primary_dir} (the promoted "
                        "standby stays primary until an operator promotes the store again)")
    if "restore-version" in steps and damage.pushed_version and damage.stable_version:
        try:
            from serving.deployment import set_version

            sud.rc.rollback(damage.stable_version)
            set_version(sud.settings, damage.stable_version)
            journal.log("rollback", f"{damage.pushed_version} taken out: stores and replicas "
                        f"back on {damage.stable_version}")
        except Exception as exc:  # noqa: BLE001 - a rollback never stops the others
            journal.log("rollback", f"restore-version failed: {exc!r}")
    if "repair-stores" in steps and (damage.touched_stores or damage.killed_nodes):
        try:
            result = sud.rc.repair()
            journal.log("rollback", "anti-entropy repair of every node store",
                        {k: str(v)[:200] for k, v in result.items()})
        except Exception as exc:  # noqa: BLE001 - a rollback never stops the others
            journal.log("rollback", f"repair failed: {exc!r}")


def _fault_thread(ctx: FaultContext, spec: Any, rec: FaultRecord, journal: _Journal,
                  start: float) -> threading.Thread:
    def body() -> None:
        time.sleep(max(0.0, start + spec.at_s - time.monotonic()))
        journal.log("fault", f"{rec.name}: inject {spec.fault}"
                    f"{f' ({spec.mode})' if spec.mode else ''}")
        try:
            (FAULTS.get(spec.fault) or RELEASE_FAULTS.get(spec.fault)
             or REGION_FAULTS[spec.fault])(ctx, spec, rec)
            journal.log("proof", f"{rec.name}: {rec.targets}", {"proof": rec.proof,
                                                                 "facts": rec.facts})
        except Exception as exc:  # noqa: BLE001 - recorded; the SLOs on its facts then fail
            rec.error = f"{type(exc).__name__}: {exc}"
            journal.log("error", f"{rec.name}: {rec.error}",
                        {"traceback": traceback.format_exc()[-2000:]})

    thread = threading.Thread(target=body, name=f"fault-{rec.name}", daemon=True)
    thread.start()
    return thread


def _measure(scenario: Scenario, outcomes: Outcomes, records: list[FaultRecord],
             end_s: float) -> dict[str, Any]:
    windows = [Phase(n, a, min(b, end_s) if b > a else a) for n, a, b in plan.phases(scenario)]
    phases = {w.label: w for w in per_phase(outcomes, [p for p in windows if p.end_s > p.start_s])}
    timeline = per_second(outcomes, end_s)
    for r in records:
        if r.fault == "overload":  # its proof: the rate the generator really offered
            w = phases.get(r.name)
            r.facts["offered_rps"] = None if w is None else round(
                w.offered / max(1e-9, w.end_s - w.start_s), 1)
    for r in records:  # as the client saw each fault's window: requests that did not succeed
        r.facts["failed_requests"] = int(sum(w.offered - w.ok for w in timeline
                                             if r.at_s <= w.start_s < r.end_s))
    facts = {r.name: dict(r.facts) for r in records}
    fault_windows = {r.name: (r.at_s, r.end_s) for r in records}
    verdicts = slo.evaluate(scenario, phases, timeline, fault_windows, facts)
    rec_slo = next((s for s in scenario.steady_state_hypothesis.slos
                    if isinstance(s, RecoverySLO)), None)
    rto = {r.name: slo.recovery_time_s(timeline, r.at_s,
                                       rec_slo.success_min if rec_slo else 0.999,
                                       rec_slo.window_s if rec_slo else 3,
                                       rec_slo.p99_ms if rec_slo else None)
           for r in records}
    return {"phases": [_window(phases[p.name]) for p in windows if p.name in phases],
            "timeline": [_window(w) for w in timeline], "facts": facts, "rto_s": rto,
            "verdicts": [asdict(v) for v in verdicts], "held": slo.held(verdicts),
            "breach": slo.worst_breach(verdicts)}


def _load_summary(outcomes: Outcomes, hist: Any, gens: Any, rate: float) -> dict[str, Any]:
    ok = outcomes.status == Status.OK
    lag = summarize(hist.lag)
    reasons = []
    if lag.p99_ms is not None and lag.p99_ms > 20:
        reasons.append(f"generator lag p99 {lag.p99_ms} ms > 20 ms: latencies are suspect")
    out = {"offered": len(outcomes), "ok": int(ok.sum()),
           "errors": outcomes.count(Status.ERROR, Status.SHED, Status.TIMEOUT),
           "dropped": outcomes.count(Status.DROPPED),
           "success_ratio": round(float(ok.mean()), 5) if len(outcomes) else None,
           "latency_ms": asdict(summarize(hist.ok)), "lag_ms": asdict(lag),
           "rate_rps": rate, "generator_cpu_s": [g.cpu_s for g in gens],
           "valid": not reasons, "invalid_reasons": reasons}
    if outcomes.searches.any():
        out["search"] = search_summary(outcomes)
    return out


def run_drill(scenario: Scenario, options: RunOptions) -> dict[str, Any]:
    """Run ``scenario`` end to end; returns the journal (also written to ``options.out``).

    Raises EnvironmentError_ before anything starts when the scenario sends searches and the
    artifact carries none, or when the audit log refuses ``drill.start``. The run's start and
    end (status, verdict, report digests) go to the one audit log (``drills.audit``).
    """
    from drills.report import write_report

    searches = search_queries(scenario, options.inputs.artifact)
    audited = drill_started(scenario, options.out, options.audit_log, options.ray_address,
                            options.actor)
    journal = _Journal()
    damage = Damage()
    records = [FaultRecord(name, f.fault, f.at_s, f.end_s)
               for name, f in zip(scenario.fault_names(), scenario.method, strict=True)]
    doc: dict[str, Any] = {"scenario": scenario.model_dump(mode="json"), "title": scenario.title,
                           "description": scenario.description, "started_at": _iso(),
                           "status": "error", "error": None, "environment": {}, "phases": [],
                           "timeline": [], "faults": [], "rto_s": {}, "verdicts": [],
                           "held": False, "breach": None, "load_summary": {}}
    work = options.out / "work"
    try:
        opener = open_regions if scenario.cluster.regions > 1 else open_system
        with opener(scenario.cluster, options.inputs, work, options.ray_address) as sud:
            try:
                _run(scenario, options, sud, journal, damage, records, doc, searches)
            finally:
                _rollbacks(scenario, sud, damage, journal)
    except KeyboardInterrupt:
        doc["status"], doc["error"] = "interrupted", "interrupted (Ctrl-C); rollbacks ran"
    except Exception as exc:  # noqa: BLE001 - the journal records it; the CLI exits non-zero
        doc["status"], doc["error"] = "error", f"{type(exc).__name__}: {exc}"
        journal.log("error", doc["error"], {"traceback": traceback.format_exc()[-4000:]})
    finally:
        if not options.keep_work:
            remove_tree(work)
    doc["faults"] = [asdict(r) for r in records]
    doc["events"], doc["ended_at"] = journal.events, _iso()
    if doc["status"] in ("error", "interrupted"):
        doc["held"] = False
    doc["audit"] = {"log": str(audited.log), "start_seq": audited.start.seq}
    try:
        paths = write_report(doc, options.out)
        doc["paths"] = {k: str(v) for k, v in paths.items()}
    finally:
        drill_finished(audited, doc)
    return doc


def _run(scenario: Scenario, options: RunOptions, sud: System, journal: _Journal,
         damage: Damage, records: list[FaultRecord], doc: dict[str, Any],
         searches: tuple[HeldOutQuery, ...] = ()) -> None:
    load = scenario.load
    journal.log("info", f"{sud.mode} cluster: {sud.alive_nodes()} nodes; publishing and "
                "deploying")
    started = sud.start()
    if scenario.load.via == "frontdoor":
        started["frontdoor"] = sud.start_frontdoor()
    damage.stable_version = sud.version
    journal.log("info", f"serving {sud.version} on {len(sud.replicas())} replicas", started)
    workload = with_searches(load_workload(options.inputs.artifact, options.inputs.checkpoint),
                             searches, load.search_share)
    spec = _transport(sud, scenario)
    rate = load.rate_rps
    if rate is None:
        assert load.rate_fraction is not None
        journal.log("info", "measuring saturation (steps of 3 s, p99 <= 100 ms, success >= 99%)")
        doc["saturation"] = measure_saturation(replace(spec, feedback=False), workload)
        rate = round(load.rate_fraction * doc["saturation"]["goodput_rps"], 1)
        journal.log("info", f"saturation {doc['saturation']['goodput_rps']:g} req/s; offered "
                    f"{load.rate_fraction:g}x = {rate:g} req/s", doc["saturation"])
    overloads = [(f.at_s, f.end_s, f.factor) for f in scenario.method if f.fault == "overload"]
    schedule = drill_schedule(rate, load.duration_s, overloads)
    doc["environment"] = {
        "mode": sud.mode, "nodes": [n["NodeID"][:12] for n in sud.nodes()],
        "head": (sud.head_node_id() or "")[:12], "version": sud.version, **started,
        "replicas": [{"rank": r.rank, "node": r.node, "pid": r.pid, "http": r.http_url,
                      "grpc": r.grpc_target} for r in sud.replicas()],
        "load": {"rate_rps": rate, "protocol": load.protocol, "client": load.client,
                 "kind": spec.kind, "via": load.via, "addresses": list(spec.addresses),
                 "duration_s": load.duration_s, "timeout_s": load.timeout_s,
                 "retries": spec.retries, "requests": len(schedule), "feedback": load.feedback,
                 "quality": options.inputs.checkpoint is not None,
                 "search_share": load.search_share, "search_queries": len(searches)}}
    picks = workload.order(len(schedule), load.seed)
    job = GeneratorJob(spec, workload, schedule, picks, 1000, 1.0, None, 1.0)
    live = _Live(scenario)
    started_evt, result, failure = threading.Event(), {}, {}

    def on_start(at: float) -> None:
        journal.start_mono = at
        started_evt.set()

    def generate() -> None:
        try:
            result["run"] = run_processes([job], load.duration_s + load.timeout_s + 60,
                                          on_start=on_start, on_progress=live.update,
                                          should_stop=lambda: live.aborted_at is not None)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the driver thread
            failure["exc"] = exc
            started_evt.set()

    gen = threading.Thread(target=generate, name="load", daemon=True)
    gen.start()
    started_evt.wait()
    if "exc" in failure:
        raise failure["exc"]
    assert journal.start_mono is not None
    start = journal.start_mono
    journal.log("info", f"load started: {rate:g} req/s {spec.kind} to {spec.address} for "
                f"{load.duration_s:g} s")
    ctx = FaultContext(sud, start, random.Random(load.seed), damage,
                       lambda k, m, d: journal.log(k, m, d), _derive(sud, options.inputs,
                                                                    options.out / "work"))
    threads = [_fault_thread(ctx, f, rec, journal, start)
               for f, rec in zip(scenario.method, records, strict=True) if f.fault != "overload"]
    for f, rec in zip(scenario.method, records, strict=True):
        if f.fault == "overload":
            rec.injected_at_s, rec.targets = f.at_s, [f"offered rate x{f.factor:g}"]
    _show_progress(gen, live, start, load.duration_s, options.progress)
    gen.join()
    if "exc" in failure:
        raise failure["exc"]
    for t in threads:
        t.join(timeout=180)
    outcomes, hist, gens = result["run"]
    end_s = float(live.aborted_at) if live.aborted_at is not None else load.duration_s
    if live.aborted_at is not None:
        doc["status"], doc["abort"] = "aborted", {"at_s": end_s, "reason": live.abort_reason}
        journal.log("abort", f"aborted: {live.abort_reason}")
        outcomes = outcomes.select(outcomes.intended_s < end_s)
    else:
        doc["status"] = "completed"
    doc["load_summary"] = _load_summary(outcomes, hist, gens, rate)
    doc.update(_measure(scenario, outcomes, records, end_s))
    if live.aborted_at is not None:
        doc["held"] = False
        doc["breach"] = doc["breach"] or f"aborted: {live.abort_reason}"


def _show_progress(gen: threading.Thread, live: _Live, start: float, duration_s: float,
                   enabled: bool) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]drill"), BarColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, disable=not enabled,
                  transient=True) as bar:
        task = bar.add_task("", total=duration_s)
        while gen.is_alive():
            gen.join(0.5)
            last = live.last_settled()
            desc = "" if last is None else f"second {last[0]}: success {last[1]:.1%}"
            bar.update(task, completed=min(duration_s, time.monotonic() - start),
                       description=desc)
