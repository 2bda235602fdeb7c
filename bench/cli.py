"""``recdrill bench`` / ``python -m bench``: one open-loop run (``load``) or the full suite.

Machine output (JSON) goes to stdout, progress to stderr. Every flag has an environment
fallback: ``RECDRILL_BENCH_*``, except the ones every recdrill CLI shares (``--artifact``,
``--checkpoint``, ``--public-key``: ``durable.options``). Exit codes: 0 ok, 2 bad
configuration, 3 the run is invalid (generator lag past its bound), 4 the run failed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from durable.options import ARTIFACT, CHECKPOINT, PUBLIC_KEY

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_INVALID_RUN", "EXIT_OK", "app", "main"]

EXIT_OK, EXIT_CONFIG, EXIT_INVALID_RUN, EXIT_FAILED = 0, 2, 3, 4

app = typer.Typer(add_completion=False, help="Open-loop load generation and baseline suites.")

_E = "RECDRILL_BENCH_"


@app.command()
def load(
    target: Annotated[list[str], typer.Option(
        "--target", "-t", envvar=_E + "TARGET",
        help="Server: base URL (http) or host:port (grpc); repeat for several (round-robin).")],
    artifact: Annotated[Path, ARTIFACT],
    checkpoint: Annotated[Path | None, CHECKPOINT] = None,
    transport: str = typer.Option("http", envvar=_E + "TRANSPORT",
                                  help="http | grpc | client-http | client-grpc (serving.client)."),
    rate_rps: float = typer.Option(100.0, "--rate", envvar=_E + "RATE", help="Offered req/s."),
    duration_s: float = typer.Option(10.0, "--duration-s", envvar=_E + "DURATION_S",
                                     help="Seconds of schedule."),
    schedule: str = typer.Option("constant", envvar=_E + "SCHEDULE", help="constant | poisson."),
    seed: int = typer.Option(0, envvar=_E + "SEED", help="Seed of schedule and user order."),
    mode: str = typer.Option("user", envvar=_E + "MODE",
                             help="Ask by user_id (user) or by item history (history)."),
    max_in_flight: int = typer.Option(1000, envvar=_E + "MAX_IN_FLIGHT",
                                      help="Past this many outstanding, requests are dropped."),
    timeout_s: float = typer.Option(2.0, "--timeout-s", envvar=_E + "TIMEOUT_S",
                                    help="Per-request client timeout (s)."),
    warmup_s: float = typer.Option(1.0, "--warmup-s", envvar=_E + "WARMUP_S",
                                   help="Unrecorded warm-up seconds."),
    processes: int = typer.Option(1, envvar=_E + "PROCESSES", help="Generator processes."),
    pin_cpu: list[int] = typer.Option([], envvar=_E + "PIN_CPU",
                                      help="Pin generator processes to these cores (repeat)."),
    max_lag_p99_ms: float = typer.Option(5.0, envvar=_E + "MAX_LAG_P99_MS",
                                         help="Send-lag p99 past which the run is invalid."),
    phases: str = typer.Option("", envvar=_E + "PHASES",
                               help="Named phases, e.g. before:0-10,during:10-20,after:20-30."),
    retries: int = typer.Option(2, envvar=_E + "RETRIES",
                                help="client-* transports only: attempts after the first."),
    out: Path = typer.Option(None, envvar=_E + "OUT",
                             help="Directory for run.json and timeline.png."),
    timeline: bool = typer.Option(False, envvar=_E + "TIMELINE",
                                  help="Include the per-second timeline on stdout."),
    search_share: float = typer.Option(0.0, min=0.0, max=1.0, envvar=_E + "SEARCH_SHARE",
                                       help="Share of requests that are searches (the "
                                            "artifact's held-out test queries, scored)."),
) -> None:
    """One open-loop run against an endpoint; prints the summary JSON."""
    from bench.loadgen import (
        BenchError,
        ConfigError,
        LoadConfig,
        TransportSpec,
        WorkloadError,
        load_search_queries,
        load_workload,
        parse_phases,
        run_load,
    )
    from bench.loadgen.report import plot_timeline, write_json

    try:
        spec = TransportSpec(transport, tuple(target), timeout_s, max_in_flight, retries=retries)
        config = LoadConfig(spec, rate_rps, duration_s, schedule, seed, max_in_flight, warmup_s,
                            processes, tuple(pin_cpu), max_lag_p99_ms, tuple(parse_phases(phases)))
        workload = load_workload(artifact, checkpoint, mode=mode)  # type: ignore[arg-type]
        if search_share > 0:
            workload = replace(workload, searches=load_search_queries(artifact),
                               search_share=search_share)
    except (ConfigError, WorkloadError) as exc:
        typer.echo(f"bench load: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    try:
        result = run_load(config, workload)
    except BenchError as exc:
        typer.echo(f"bench load: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    summary = result.summary(timeline=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "run.json", summary)
        plot_timeline(summary, out / "timeline.png")
    if not timeline:
        summary.pop("timeline", None)
    typer.echo(json.dumps(summary))
    if not result.valid:
        typer.echo(f"bench load: invalid run: {'; '.join(result.invalid_reasons)}", err=True)
        raise typer.Exit(EXIT_INVALID_RUN)


@app.command()
def suite(
    artifact: Annotated[Path, ARTIFACT],
    out: Path = typer.Option(Path("runs/bench"), envvar=_E + "OUT",
                             help="Directory for suite.json, suite.md, curves.png, logs/."),
    checkpoint: Annotated[Path | None, CHECKPOINT] = None,
    public_key: Annotated[Path | None, PUBLIC_KEY] = None,
    contender: list[str] = typer.Option([], envvar=_E + "CONTENDER",
                                        help="Contenders to run (repeat; default all)."),
    endpoint: list[str] = typer.Option([], envvar=_E + "ENDPOINT",
                                       help="Also measure name=http://host:port or name=grpc://h:p."),
    mode: str = typer.Option("user", envvar=_E + "MODE", help="user | history requests."),
    start_rps: float = typer.Option(50.0, envvar=_E + "START_RPS", help="First offered rate."),
    factor: float = typer.Option(2.0, envvar=_E + "FACTOR", help="Rate multiplier per step."),
    max_rps: float = typer.Option(6400.0, envvar=_E + "MAX_RPS", help="Highest offered rate."),
    step_s: float = typer.Option(4.0, envvar=_E + "STEP_S", help="Seconds per rate step."),
    slo_p99_ms: float = typer.Option(100.0, envvar=_E + "SLO_P99_MS",
                                     help="p99 bound of a passing step."),
    generator_cpu: int = typer.Option(0, envvar=_E + "GENERATOR_CPU",
                                      help="Core the generator is pinned to (-1: not pinned)."),
    generator_processes: int = typer.Option(1, envvar=_E + "GENERATOR_PROCESSES",
                                            help="Generator processes per step."),
    max_lag_p99_ms: float = typer.Option(5.0, envvar=_E + "MAX_LAG_P99_MS",
                                         help="Send-lag p99 past which a step is invalid."),
    serve_replicas: int = typer.Option(1, envvar=_E + "SERVE_REPLICAS",
                                       help="Ray Serve replicas of the recdrill contenders."),
    raw_s: float = typer.Option(5.0, envvar=_E + "RAW_S", help="Seconds of raw onnxruntime."),
    export_bench: bool = typer.Option(True, envvar=_E + "EXPORT_BENCH",
                                      help="Also run ONNX vs torch, fp32 vs int8."),
) -> None:
    """All contenders on one model in one run; prints saturations, ratios and goals as JSON."""
    from bench.loadgen import BenchError, ConfigError
    from bench.loadgen.saturation import SLO
    from bench.suite import CONTENDERS, SuiteConfig, parse_endpoint, run_suite

    try:
        cfg = SuiteConfig(
            artifact=artifact, out=out, checkpoint=checkpoint, public_key=public_key,
            contenders=tuple(contender) or CONTENDERS,
            endpoints=tuple(parse_endpoint(e) for e in endpoint), mode=mode, start_rps=start_rps,
            factor=factor, max_rps=max_rps, step_s=step_s, slo=SLO(p99_ms=slo_p99_ms),
            generator_cpu=None if generator_cpu < 0 else generator_cpu,
            generator_processes=generator_processes, max_lag_p99_ms=max_lag_p99_ms,
            raw_s=raw_s, export_bench=export_bench, serve_replicas=serve_replicas)
    except ConfigError as exc:
        typer.echo(f"bench suite: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    try:
        result = run_suite(cfg)
    except BenchError as exc:
        typer.echo(f"bench suite: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo((out / "suite.md").read_text(), err=True)
    typer.echo(json.dumps({
        "saturation_rps": {c["name"]: c["saturation_rps"] for c in result["contenders"]},
        "ratios": result["ratios"], "goals": result["goals"], "out": str(out)}))


def main() -> None:
    """Console entry point (``python -m bench``)."""
    app(prog_name="bench")


if __name__ == "__main__":
    main()
