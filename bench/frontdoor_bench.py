"""``python -m bench.frontdoor_bench``: recdrill's front door against Ray Serve's own HAProxy
mode, Serve's standard proxy and the FastAPI + onnxruntime baseline — same artifact, same
open-loop generator (one attempt per request, no retries), one run.

Contenders (N = ``--replicas``, default the number of cores):

- ``fastapi``: FastAPI + uvicorn + onnxruntime, N worker processes (the baseline of the
  ratios), and ``fastapi-1``: the same with one worker;
- ``serve-haproxy``: Ray Serve with ``RAY_SERVE_ENABLE_HA_PROXY=1`` and
  ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` on a Ray instance of its own, N replicas of the same
  onnxruntime handler behind Serve's HAProxy (:mod:`bench.contenders.serve_haproxy`);
- ``frontdoor``: recdrill's front door (:mod:`serving.frontdoor`, HAProxy, one thread) over N
  replicas of ``python -m serving serve``; also gRPC (h2) through it at half saturation, and
  one replica / all replicas reached directly at that rate (the p50 the front door adds);
- ``serve-proxy``: the same recdrill replicas through Ray Serve's standard HTTP proxy.

For each: saturation by rate stepping (:func:`bench.suite.search_saturation`), p50/p99 at half
of it, and an overload run at 2× for ``--duration-s`` (goodput, shares shed / failed, how fast
failures came back, held / sagged / collapsed: :mod:`bench.loadgen.overload`). Writes
``frontdoor.json``, ``frontdoor.md``, ``curves.png`` and ``logs/`` into ``--out``; prints a
JSON summary on stdout, one line per step on stderr. Everything it starts is stopped on the way
out, also on Ctrl-C or SIGTERM. Importing this module does no work.

Example:
    $ python -m bench.frontdoor_bench --artifact runs/demo/artifacts/V \\
        --public-key ~/.config/recdrill/keys/signing.pub --out runs/frontdoor --quick
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import typer

from bench.contenders import launch
from bench.loadgen.compare import ContenderRecord, ratios
from bench.loadgen.errors import BenchError, ConfigError
from bench.loadgen.overload import answered_within, judge_overload, overload_from_summary
from bench.loadgen.saturation import SLO, Step, saturation
from bench.loadgen.transports import TransportSpec
from bench.loadgen.workload import Workload

__all__ = ["CONTENDERS", "EXIT_CONFIG", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK",
           "FrontdoorBenchConfig", "app", "run_frontdoor_bench"]

CONTENDERS = ("fastapi", "fastapi-1", "serve-haproxy", "frontdoor", "serve-proxy")
EXIT_OK, EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED = 0, 2, 4, 130

Log = Callable[[str], None]


@dataclass(frozen=True)
class FrontdoorBenchConfig:
    """What to measure and how hard; ``quick`` presets come from :meth:`quick`."""

    artifact: Path
    public_key: Path
    out: Path
    replicas: int = field(default_factory=lambda: os.cpu_count() or 1)
    contenders: tuple[str, ...] = CONTENDERS
    duration_s: float = 10.0
    step_s: float = 4.0
    warmup_s: float = 1.0
    start_rps: float = 100.0
    factor: float = 2.0
    max_rps: float = 6400.0
    refine: int = 2
    confirm_failures: bool = True
    overload_factor: float = 2.0
    slo_p99_ms: float = 100.0
    timeout_s: float = 2.0
    max_in_flight: int = 1000
    generator_cpu: int | None = 0
    max_lag_p99_ms: float = 5.0
    renice: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.contenders) - set(CONTENDERS)
        if unknown:
            raise ConfigError(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
        if self.replicas < 1 or self.duration_s <= 0 or self.step_s <= 0:
            raise ConfigError(f"replicas, duration_s and step_s must be positive, found "
                              f"{self.replicas}, {self.duration_s}, {self.step_s}")
        if self.overload_factor <= 1:
            raise ConfigError(f"overload_factor must be > 1, found {self.overload_factor}")

    def quick(self) -> FrontdoorBenchConfig:
        """A ~3-minute smoke run: short steps, one refinement, and the generator in this
        process (a pinned one is a process spawned per step, ~1.5 s each)."""
        return replace(self, duration_s=3.0, step_s=1.0, warmup_s=0.5,
                       start_rps=max(self.start_rps, 300.0), refine=1, generator_cpu=None)

    def suite_config(self) -> Any:
        """The :class:`bench.suite.SuiteConfig` that the shared stepping functions read."""
        from bench.suite import SuiteConfig

        return SuiteConfig(
            artifact=self.artifact, out=self.out, public_key=self.public_key, contenders=(),
            start_rps=self.start_rps, factor=self.factor, max_rps=self.max_rps,
            refine=self.refine, step_s=self.step_s, warmup_s=self.warmup_s,
            slo=SLO(p99_ms=self.slo_p99_ms), generator_cpu=self.generator_cpu,
            timeout_s=self.timeout_s, max_in_flight=self.max_in_flight,
            max_lag_p99_ms=self.max_lag_p99_ms, export_bench=False,
            serve_replicas=self.replicas, confirm_failures=self.confirm_failures)

    @property
    def baseline(self) -> str:
        return f"fastapi-ort-w{self.replicas}"


@dataclass
class _Run:
    cfg: FrontdoorBenchConfig
    workload: Workload
    log: Log
    records: list[ContenderRecord] = field(default_factory=list)
    refs: dict[str, Step] = field(default_factory=dict)

    def spec(self, kind: str, *addresses: str) -> TransportSpec:
        return TransportSpec(kind, addresses, self.cfg.timeout_s, self.cfg.max_in_flight)

    def curve(self, name: str, spec: TransportSpec, health: str | None,
              **extra: Any) -> ContenderRecord:
        """Saturation, then half of it and the overload run, each for ``duration_s``."""
        from bench.suite import measure_step, search_saturation

        scfg = self.cfg.suite_config()
        steps = search_saturation(scfg, name, spec, self.workload, self.log, health)
        sat = saturation(steps, scfg.slo)
        extra = {"addresses": list(spec.addresses), **extra}
        if sat is None:
            self.log(f"{name}: no offered rate met the SLO; no half / overload run")
            return self._add(ContenderRecord(name, spec.kind, tuple(steps), extra=extra))
        long = replace(scfg, step_s=self.cfg.duration_s)
        half, _ = measure_step(long, name, spec, self.workload, max(1.0, sat.goodput_rps / 2),
                               "half", self.log, health)
        double, result = measure_step(long, name, spec, self.workload,
                                      sat.goodput_rps * self.cfg.overload_factor, "double",
                                      self.log, health)
        summary = result.summary(timeline=True)
        over = overload_from_summary(summary,
                                     answered_within(result.outcomes, self.cfg.slo_p99_ms))
        verdict = judge_overload(over, sat.goodput_rps, fast_ms=self.cfg.slo_p99_ms)
        self.log(f"{name}: saturation {sat.goodput_rps:.0f}/s; overload {over.offered_rps:.0f}/s"
                 f" → goodput {over.goodput_rps:.0f}/s ({verdict.verdict}; degraded "
                 f"{over.degraded_share or 0:.1%}), within the SLO "
                 f"{over.slo_goodput_rps:.0f}/s, shed {over.shed_share:.1%}, failed "
                 f"{over.failed_share:.1%}, failures p50/p99 {over.failed_p50_ms}/"
                 f"{over.failed_p99_ms} ms")
        extra |= {"overload": asdict(over) | {"failed_share": over.failed_share},
                  "verdict": asdict(verdict), "overload_timeline": summary["timeline"]}
        return self._add(ContenderRecord(name, spec.kind, (*steps, half, double), sat, half,
                                         double, extra=extra))

    def reference(self, name: str, spec: TransportSpec, rate: float,
                  health: str | None) -> Step:
        """One step at ``rate`` for ``duration_s``, kept as a reference point."""
        from bench.suite import measure_step

        long = replace(self.cfg.suite_config(), step_s=self.cfg.duration_s)
        step, _ = measure_step(long, name, spec, self.workload, rate, "half", self.log, health)
        self.refs[name] = step
        self._add(ContenderRecord(name, spec.kind, (step,), half=step,
                                  extra={"addresses": list(spec.addresses), "role": "reference"}))
        return step

    def failed(self, name: str, exc: BaseException) -> None:
        self.log(f"{name} failed: {exc}")
        self._add(ContenderRecord(name, "http", error=str(exc) or type(exc).__name__))

    def _add(self, record: ContenderRecord) -> ContenderRecord:
        self.records.append(record)
        return record


def _fastapi(run: _Run, workers: int) -> None:
    name = f"fastapi-ort-w{workers}"
    with launch.fastapi_ort(run.cfg.artifact, workers, run.cfg.out / "logs") as url:
        run.curve(name, run.spec("http", url), url + "/healthz", workers=workers)


def _serve_haproxy(run: _Run) -> None:
    cfg = run.cfg
    with launch.serve_haproxy(cfg.artifact, cfg.replicas, cfg.out / "logs", cfg.renice,
                              run.log) as url:
        run.curve("serve-haproxy", run.spec("http", url), url + "/healthz",
                  replicas=cfg.replicas)


def _recdrill(run: _Run) -> None:
    cfg, keys = run.cfg, run.cfg.contenders
    with launch.recdrill_serve(cfg.artifact, cfg.public_key, cfg.replicas, cfg.out / "logs",
                               proxy="serve-proxy" in keys, renice=cfg.renice,
                               log=run.log) as stack:
        replica0 = stack.endpoints[0].http_url + "/readyz"
        if "frontdoor" in keys:
            with launch.front_door(stack.endpoints) as door:
                health = door.http_url + "/readyz"
                rec = run.curve("recdrill-frontdoor", run.spec("http", door.http_url), health,
                                replicas=cfg.replicas)
                if rec.half is not None:
                    rate = rec.half.offered_rps
                    run.reference("recdrill-frontdoor-grpc", run.spec("grpc", door.grpc_target),
                                  rate, health)
                    run.reference("recdrill-replica-direct",
                                  run.spec("http", stack.endpoints[0].http_url), rate, replica0)
                    run.reference("recdrill-replicas-rr",
                                  run.spec("http", *(e.http_url for e in stack.endpoints)),
                                  rate, replica0)
        if "serve-proxy" in keys and stack.proxy_url is not None:
            run.curve("serve-proxy", run.spec("http", stack.proxy_url),
                      stack.proxy_url + "/-/healthz", replicas=cfg.replicas)


def _stages(cfg: FrontdoorBenchConfig) -> list[tuple[str, Callable[[_Run], None]]]:
    keys, stages = cfg.contenders, []
    if "fastapi" in keys:
        stages.append((cfg.baseline, lambda r: _fastapi(r, cfg.replicas)))
    if "fastapi-1" in keys and (cfg.replicas != 1 or "fastapi" not in keys):
        stages.append(("fastapi-ort-w1", lambda r: _fastapi(r, 1)))
    if "serve-haproxy" in keys:
        stages.append(("serve-haproxy", _serve_haproxy))
    if "frontdoor" in keys or "serve-proxy" in keys:
        stages.append(("recdrill", _recdrill))
    return stages


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _result(run: _Run, machine: dict[str, Any], elapsed_s: float,
            interrupted: bool) -> dict[str, Any]:
    from bench.frontdoor_report import door_figures

    cfg, named = run.cfg, {r.name: r for r in run.records}
    door = door_figures(named.get("recdrill-frontdoor"), run.refs.get("recdrill-replica-direct"),
                        run.refs.get("recdrill-replicas-rr"),
                        run.refs.get("recdrill-frontdoor-grpc"))
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    return {"machine": machine, "config": config, "elapsed_s": round(elapsed_s, 1),
            "interrupted": interrupted, "baseline": cfg.baseline,
            "contenders": [r.to_dict() for r in run.records],
            "ratios": {name: row[cfg.baseline]
                       for name, row in ratios(run.records, (cfg.baseline,)).items()},
            "frontdoor": door}


def _write(run: _Run, result: dict[str, Any]) -> None:
    from bench.frontdoor_report import markdown
    from bench.loadgen.report import plot_curves, write_json
    from durable import atomic_write_text

    write_json(run.cfg.out / "frontdoor.json", result)
    ratio_rows = {k: {run.cfg.baseline: v} for k, v in result["ratios"].items()}
    atomic_write_text(run.cfg.out / "frontdoor.md",
                      markdown(run.records, ratio_rows, run.cfg.baseline, result["frontdoor"],
                               result["machine"], result["config"]))
    if any(r.steps for r in run.records):
        plot_curves(run.records, run.cfg.out / "curves.png")


def run_frontdoor_bench(cfg: FrontdoorBenchConfig, log: Log) -> dict[str, Any]:
    """Measure every selected contender, write the outputs; the result is also returned.

    A contender that fails to start is recorded with its error and the run goes on. On Ctrl-C
    (or SIGTERM) the contender running is stopped, what was measured is written, and
    KeyboardInterrupt is raised again.
    """
    from bench.loadgen.report import machine_info
    from bench.loadgen.workload import load_workload

    cfg.out.mkdir(parents=True, exist_ok=True)
    machine, started = machine_info(), time.monotonic()
    run = _Run(cfg, load_workload(cfg.artifact, None, mode="user"), log)
    stages = _stages(cfg)
    interrupted = False
    try:
        with _sigterm_as_interrupt():
            for i, (name, stage) in enumerate(stages, 1):
                log(f"[{i}/{len(stages)}] {name}: starting")
                try:
                    stage(run)
                except (BenchError, OSError, RuntimeError, TimeoutError) as exc:
                    run.failed(name, exc)
                log(f"[{i}/{len(stages)}] {name}: stopped")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: everything started was stopped; writing what was measured")
    result = _result(run, machine, time.monotonic() - started, interrupted)
    _write(run, result)
    if interrupted:
        raise KeyboardInterrupt
    return result


def _progress(started: float) -> Log:
    try:
        from rich.console import Console
        from rich.markup import escape

        console = Console(stderr=True, highlight=False)

        def rich_log(message: str) -> None:
            console.print(f"[dim]{time.monotonic() - started:6.0f}s[/] {escape(message)}",
                          soft_wrap=True)

        return rich_log
    except ImportError:  # pragma: no cover
        return lambda m: print(f"{time.monotonic() - started:6.0f}s {m}", file=sys.stderr,
                               flush=True)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    rows = {}
    for c in result["contenders"]:
        if c.get("role") == "reference":
            continue
        half = c.get("half") or {}
        rows[c["name"]] = {"saturation_rps": c["saturation_rps"],
                           "ratio": result["ratios"].get(c["name"]),
                           "half_p50_ms": half.get("p50_ms"), "half_p99_ms": half.get("p99_ms"),
                           "overload": (c.get("verdict") or {}).get("verdict"),
                           "error": c.get("error")}
    return {"baseline": result["baseline"], "contenders": rows, "frontdoor": result["frontdoor"],
            "interrupted": result["interrupted"], "elapsed_s": result["elapsed_s"]}


_E = "RECDRILL_FRONTDOOR_BENCH_"
app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0] if __doc__ else None)


@app.command()
def main(
    artifact: Path = typer.Option(..., envvar=_E + "ARTIFACT",
                                  help="Signed artifact directory every contender serves."),
    public_key: Path = typer.Option(..., envvar=_E + "PUBLIC_KEY",
                                    help="Signing public key (recdrill verifies the artifact)."),
    out: Path = typer.Option(Path("runs/frontdoor"), envvar=_E + "OUT",
                             help="Directory for frontdoor.json/.md, curves.png, logs/."),
    duration_s: float = typer.Option(None, envvar=_E + "DURATION_S",
                                     help="Seconds of the half-saturation and overload runs "
                                          "(default 10; 4 with --quick)."),
    step_s: float = typer.Option(None, envvar=_E + "STEP_S",
                                 help="Seconds per search step (default 4; 1.5 with --quick)."),
    quick: bool = typer.Option(False, "--quick", envvar=_E + "QUICK",
                               help="Smoke run (~3 min): short steps, one refinement."),
    replicas: int = typer.Option(None, envvar=_E + "REPLICAS",
                                 help="Replicas / workers of the N-way contenders "
                                      "(default: the number of cores)."),
    contender: list[str] = typer.Option([], envvar=_E + "CONTENDER",
                                        help="Contenders to run (repeat; default all): "
                                             "fastapi, fastapi-1, serve-haproxy, frontdoor, "
                                             "serve-proxy."),
    start_rps: float = typer.Option(100.0, envvar=_E + "START_RPS", help="First offered rate."),
    max_rps: float = typer.Option(6400.0, envvar=_E + "MAX_RPS", help="Highest search rate."),
    overload_factor: float = typer.Option(2.0, envvar=_E + "OVERLOAD_FACTOR",
                                          help="Overload run at this × saturation."),
    slo_p99_ms: float = typer.Option(100.0, envvar=_E + "SLO_P99_MS",
                                     help="p99 bound of a passing step."),
    generator_cpu: int = typer.Option(0, envvar=_E + "GENERATOR_CPU",
                                      help="Core the generator is pinned to (-1: not pinned)."),
    renice: bool = typer.Option(True, envvar=_E + "RENICE",
                                help="Run Ray's worker processes at nice 0 like the generator "
                                     "and the other contenders (Ray starts them at 15)."),
) -> None:
    """Front doors side by side; JSON summary on stdout, one line per step on stderr."""
    try:
        cfg = FrontdoorBenchConfig(
            artifact=artifact, public_key=public_key, out=out,
            replicas=replicas or os.cpu_count() or 1,
            contenders=tuple(contender) or CONTENDERS, start_rps=start_rps, max_rps=max_rps,
            overload_factor=overload_factor, slo_p99_ms=slo_p99_ms,
            generator_cpu=None if generator_cpu < 0 else generator_cpu, renice=renice)
        cfg = cfg.quick() if quick else cfg
        cfg = replace(cfg, duration_s=duration_s or cfg.duration_s, step_s=step_s or cfg.step_s)
        for path in (artifact, public_key):
            if not path.exists():
                raise ConfigError(f"{path} does not exist")
    except ConfigError as exc:
        typer.echo(f"frontdoor bench: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    log = _progress(time.monotonic())
    try:
        result = run_frontdoor_bench(cfg, log)
    except KeyboardInterrupt:
        log(f"partial results in {cfg.out}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BenchError as exc:
        typer.echo(f"frontdoor bench: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    summary = _summary(result)
    for name, row in summary["contenders"].items():
        log(f"{name}: saturation {row['saturation_rps']} req/s = {row['ratio']}× "
            f"{summary['baseline']}; p50/p99 at half {row['half_p50_ms']}/{row['half_p99_ms']} "
            f"ms; overload: {row['overload']}{'; ' + row['error'] if row['error'] else ''}")
    door = summary["frontdoor"]
    if door["rate_rps"] is not None:
        log(f"front door adds {door['added_p50_ms_vs_one_replica']} ms at p50 vs one replica, "
            f"{door['added_p50_ms_vs_replicas_rr']} ms vs all replicas round-robin "
            f"(at {door['rate_rps']} req/s); gRPC through it p50/p99 {door['grpc_p50_ms']}/"
            f"{door['grpc_p99_ms']} ms")
    log(f"done in {result['elapsed_s']:.0f} s: {cfg.out / 'frontdoor.md'}")
    typer.echo(json.dumps(summary))


if __name__ == "__main__":
    app()
