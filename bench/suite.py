"""``recdrill bench suite``: every contender, same model, same run; saturation by rate stepping,
latency–throughput curves, ratios to the baselines, the issue's goals; JSON + Markdown + PNG.

Contenders (selected by name, each optional):

- ``raw-ort`` / ``raw-ort-int8``: onnxruntime in process, the limit of this machine;
- ``fastapi-ort``: plain FastAPI + uvicorn + onnxruntime, one process;
- ``flask-torch``: the naive Flask + PyTorch eager server (needs the training checkpoint);
- ``recdrill-batch`` / ``recdrill-nobatch``: ``python -m serving serve`` on Ray Serve with
  batching on / off, measured over direct-ingress HTTP and gRPC (its chosen path) and, for
  ``recdrill-batch``, through Serve's standard HTTP proxy (needs the signing public key);
- external endpoints (``--endpoint name=http://host:port``), measured as they are.

Importing this module does no work; :func:`run_suite` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.contenders.process import ServerProcess, free_port
from bench.loadgen.compare import ContenderRecord, goals, ratios
from bench.loadgen.errors import BenchError, ConfigError
from bench.loadgen.report import machine_info, markdown_report, plot_curves, write_json
from bench.loadgen.runner import LoadConfig, LoadResult, run_load
from bench.loadgen.saturation import (
    SLO,
    Step,
    next_rate,
    saturation,
    step_from_summary,
    step_passes,
)
from bench.loadgen.transports import TransportSpec
from bench.loadgen.workload import Workload, load_workload

__all__ = ["CONTENDERS", "Endpoint", "SuiteConfig", "measure_curve", "measure_step",
           "parse_endpoint", "run_suite", "search_saturation"]

CONTENDERS = ("raw-ort", "raw-ort-int8", "fastapi-ort", "flask-torch", "recdrill-batch",
              "recdrill-nobatch")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Endpoint:
    """A server measured as it is: name, transport (http / grpc) and its addresses."""

    name: str
    transport: str
    addresses: tuple[str, ...]


def parse_endpoint(spec: str) -> Endpoint:
    """``name=http://h:p[,http://h:p2]`` or ``name=grpc://h:p`` → :class:`Endpoint`.

    Example:
        >>> parse_endpoint("serve=grpc://127.0.0.1:9000")
        Endpoint(name='serve', transport='grpc', addresses=('127.0.0.1:9000',))
    """
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"endpoint must look like name=http://host:port, found {spec!r}")
    addresses = tuple(a.strip() for a in rest.split(",") if a.strip())
    if all(a.startswith("grpc://") for a in addresses):
        return Endpoint(name, "grpc", tuple(a.removeprefix("grpc://") for a in addresses))
    if all(a.startswith(("http://", "https://")) for a in addresses):
        return Endpoint(name, "http", addresses)
    raise ConfigError(f"endpoint {name!r}: addresses must all be http(s):// or grpc://, found {rest!r}")


@dataclass(frozen=True)
class SuiteConfig:
    """What to measure and how hard; see ``recdrill bench suite --help`` for each field."""

    artifact: Path
    out: Path
    checkpoint: Path | None = None
    public_key: Path | None = None
    contenders: tuple[str, ...] = CONTENDERS
    endpoints: tuple[Endpoint, ...] = ()
    mode: str = "user"
    start_rps: float = 50.0
    factor: float = 2.0
    max_rps: float = 6400.0
    refine: int = 2
    step_s: float = 4.0
    warmup_s: float = 1.0
    slo: SLO = field(default_factory=SLO)
    generator_cpu: int | None = 0
    generator_processes: int = 1
    timeout_s: float = 2.0
    max_in_flight: int = 1000
    max_lag_p99_ms: float = 5.0
    raw_s: float = 5.0
    export_bench: bool = True
    serve_replicas: int = 1
    confirm_failures: bool = True
    export_timeout_s: float = 180.0

    def __post_init__(self) -> None:
        unknown = set(self.contenders) - set(CONTENDERS)
        if unknown:
            raise ConfigError(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")


def _stderr(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _load(cfg: SuiteConfig, spec: TransportSpec, workload: Workload, rate: float) -> LoadResult:
    pins = (cfg.generator_cpu,) if cfg.generator_cpu is not None else ()
    config = LoadConfig(spec, rate_rps=rate, duration_s=cfg.step_s, warmup_s=cfg.warmup_s,
                        max_in_flight=cfg.max_in_flight, processes=cfg.generator_processes,
                        pin_cpus=pins, max_lag_p99_ms=cfg.max_lag_p99_ms)
    return run_load(config, workload)


def _recover(health: str | None, log: Log, timeout_s: float = 60.0) -> None:
    """Wait until the server answers its health check in under 50 ms: a server still working
    off the previous step's backlog (a one-at-a-time server keeps serving requests whose
    clients gave up) would otherwise be charged for it in the next step."""
    import urllib.error
    import urllib.request

    time.sleep(0.5)
    if health is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            with urllib.request.urlopen(health, timeout=5.0):
                if time.monotonic() - start < 0.05:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    log(f"{health} still slow after {timeout_s:.0f} s; measuring anyway")


def measure_step(cfg: SuiteConfig, name: str, spec: TransportSpec, workload: Workload,
                 rate: float, kind: str, log: Log = _stderr,
                 health: str | None = None) -> tuple[Step, LoadResult]:
    """One logged run of ``cfg.step_s`` at ``rate``, then wait for the server to recover;
    returns the :class:`Step` and the whole run (per-request outcomes, errors, sheds)."""
    result = _load(cfg, spec, workload, rate)
    s = step_from_summary(result.summary(timeline=False), kind)
    log(f"{name}: offered {rate:.0f}/s → goodput {s.goodput_rps:.0f}/s, p50 {s.p50_ms} ms, "
        f"p99 {s.p99_ms} ms, ok {s.success_ratio:.3f}, lag p99 {s.lag_p99_ms} ms, "
        f"gen cpu {s.generator_cpu_share:.2f}{'' if s.valid else ' (INVALID)'}"
        f" [{kind}{', pass' if step_passes(s, cfg.slo) else ''}]")
    _recover(health, log)
    return s, result


def search_saturation(cfg: SuiteConfig, name: str, spec: TransportSpec, workload: Workload,
                      log: Log = _stderr, health: str | None = None) -> list[Step]:
    """Step the offered rate until saturation is bracketed (:func:`next_rate`).

    A failing step is measured once more after the server recovered (machines here are
    shared, so one noisy step should not end the search); the first try is kept as
    ``rejected``.
    """
    steps: list[Step] = []
    while (rate := next_rate(steps, cfg.slo, cfg.start_rps, cfg.factor, cfg.max_rps,
                             cfg.refine)) is not None:
        counted = [s for s in steps if s.kind in ("search", "refine")]
        passed = any(step_passes(s, cfg.slo) for s in counted)
        failed = any(not step_passes(s, cfg.slo) for s in counted)
        kind = "refine" if passed and failed else "search"
        s, _ = measure_step(cfg, name, spec, workload, rate, kind, log, health)
        if not step_passes(s, cfg.slo) and cfg.confirm_failures:
            steps.append(replace(s, kind="rejected"))
            s, _ = measure_step(cfg, name, spec, workload, rate, kind, log, health)
        steps.append(s)
    return steps


def measure_curve(cfg: SuiteConfig, name: str, spec: TransportSpec, workload: Workload,
                  log: Log = _stderr, health: str | None = None) -> ContenderRecord:
    """Step the offered rate to saturation (:func:`search_saturation`), then measure at 50%
    and 200% of it."""
    steps = search_saturation(cfg, name, spec, workload, log, health)
    sat = saturation(steps, cfg.slo)
    half = double = None
    if sat is not None:
        half, _ = measure_step(cfg, name, spec, workload, max(1.0, sat.goodput_rps / 2), "half",
                               log, health)
        double, _ = measure_step(cfg, name, spec, workload, sat.goodput_rps * 2, "double", log,
                                 health)
        steps += [half, double]
    return ContenderRecord(name, spec.kind, tuple(steps), sat, half, double,
                           extra={"addresses": list(spec.addresses)})


def _raw(cfg: SuiteConfig, name: str, workload: Workload, log: Log) -> ContenderRecord:
    from bench.contenders.raw_ort import run_raw

    model = "model.int8.onnx" if name.endswith("int8") else "model.onnx"
    if not (cfg.artifact / model).exists():
        return ContenderRecord(name, "in-process", error=f"{model} not in the artifact")
    cpu = 1 if (os.cpu_count() or 1) > 1 and cfg.generator_cpu == 0 else cfg.generator_cpu
    out = run_raw(cfg.artifact, workload, cfg.raw_s, model_file=model, cpu=cpu)
    lat, q = out["latency_ms"], out["quality"]
    log(f"{name}: {out['throughput_rps']:.0f} calls/s, p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms")
    sat = Step(out["throughput_rps"], out["throughput_rps"], 1.0, lat["p50_ms"], lat["p99_ms"],
               lat["max_ms"], None, out["cpu_share"], True, q["hr"], q["ndcg"], 0.0, "closed-loop")
    return ContenderRecord(name, "in-process", (), sat, extra={"raw": out})


@contextlib.contextmanager
def _serve(cfg: SuiteConfig, batching: bool, logs: Path) -> Iterator[dict[str, tuple[str, ...]]]:
    """``python -m serving serve`` in its own process group; yields its addresses by path."""
    http, grpc, proxy = free_port(), free_port(), free_port()
    replicas = cfg.serve_replicas
    args = ["serve", "--artifact", str(cfg.artifact), "--public-key", str(cfg.public_key),
            "--http-port", str(http), "--grpc-port", str(grpc), "--replicas", str(replicas),
            "--batching" if batching else "--no-batching", "--no-frontdoor"]
    if batching:
        args += ["--proxy-port", str(proxy)]
    ray_tmp = tempfile.mkdtemp(prefix="rdb-")
    server = ServerProcess("serving", args, logs / f"serve-{'batch' if batching else 'nobatch'}.log",
                           port=http, port_flag=None, health_path="/readyz",
                           ready_timeout_s=180.0, env={"RAY_TMPDIR": ray_tmp})
    with server:
        for r in range(1, replicas):
            ServerProcess.wait_ready(f"http://127.0.0.1:{http + r}/readyz", 60.0)
        paths = {"http": tuple(f"http://127.0.0.1:{http + r}" for r in range(replicas)),
                 "grpc": tuple(f"127.0.0.1:{grpc + r}" for r in range(replicas))}
        if batching:
            paths["proxy"] = (f"http://127.0.0.1:{proxy}",)
        yield paths


def _servers(cfg: SuiteConfig, workload: Workload, log: Log) -> list[ContenderRecord]:
    from bench.contenders import SERVERS

    records = []
    logs = cfg.out / "logs"
    for name in ("fastapi-ort", "flask-torch"):
        if name not in cfg.contenders:
            continue
        if name == "flask-torch":
            if cfg.checkpoint is None:
                records.append(ContenderRecord(name, "http", error="needs --checkpoint"))
                continue
            args = ["--checkpoint", str(cfg.checkpoint)]
        else:
            args = ["--artifact", str(cfg.artifact)]
        try:
            with ServerProcess(SERVERS[name], args, logs / f"{name}.log") as server:
                spec = TransportSpec("http", (server.url,), cfg.timeout_s, cfg.max_in_flight)
                records.append(measure_curve(cfg, name, spec, workload, log,
                                             health=server.url + "/healthz"))
        except BenchError as exc:
            log(f"{name} failed: {exc}")
            records.append(ContenderRecord(name, "http", error=str(exc)))
    for name, batching in (("recdrill-batch", True), ("recdrill-nobatch", False)):
        if name not in cfg.contenders:
            continue
        suffix = "" if batching else "-nobatch"
        if cfg.public_key is None:
            records.append(ContenderRecord(f"recdrill{suffix}", "http",
                                           error="needs --public-key (artifact verification)"))
            continue
        try:
            with _serve(cfg, batching, logs) as paths:
                for path, addresses in paths.items():
                    kind = "grpc" if path == "grpc" else "http"
                    spec = TransportSpec(kind, addresses, cfg.timeout_s, cfg.max_in_flight)
                    records.append(measure_curve(cfg, f"recdrill-{path}{suffix}", spec,
                                                 workload, log,
                                                 health=paths["http"][0] + "/readyz"))
        except BenchError as exc:
            log(f"recdrill{suffix} failed: {exc}")
            records.append(ContenderRecord(f"recdrill{suffix}", "http", error=str(exc)))
    for ep in cfg.endpoints:
        spec = TransportSpec(ep.transport, ep.addresses, cfg.timeout_s, cfg.max_in_flight)
        records.append(measure_curve(cfg, ep.name, spec, workload, log))
    return records


def _export_rows(cfg: SuiteConfig, log: Log) -> list[dict[str, Any]]:
    if not cfg.export_bench or cfg.checkpoint is None:
        return []
    import json
    import subprocess

    log("export bench: ONNX vs PyTorch eager, fp32 vs int8 (python -m bench.export_bench)")
    argv = [sys.executable, "-m", "bench.export_bench", "--artifact", str(cfg.artifact),
            "--checkpoint", str(cfg.checkpoint)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:  # bounded: a crashed backend child must not hang the suite
        out, err = proc.communicate(timeout=cfg.export_timeout_s)
        lines = out.strip().splitlines()
        if proc.returncode == 0 and lines:
            return list(json.loads(lines[-1]))
        error = (err.strip().splitlines() or ["no output"])[-1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        error = f"no answer within {cfg.export_timeout_s:.0f} s (a backend process crashed?)"
    except ValueError as exc:
        error = repr(exc)
    log(f"export bench failed: {error}")
    return [{"backend": "failed", "error": error}]


def run_suite(cfg: SuiteConfig, log: Log = _stderr) -> dict[str, Any]:
    """Measure every selected contender; write suite.json, suite.md, curves.png into ``cfg.out``."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    workload = load_workload(cfg.artifact, cfg.checkpoint, mode=cfg.mode)  # type: ignore[arg-type]
    log(f"{len(workload.users)} held-out users, mode {cfg.mode}, "
        f"quality {'scored' if cfg.checkpoint else 'not scored (no --checkpoint)'}")
    records = [_raw(cfg, n, workload, log) for n in ("raw-ort", "raw-ort-int8")
               if n in cfg.contenders]
    records += _servers(cfg, workload, log)
    export_rows = _export_rows(cfg, log)
    ratio_table, goal_list = ratios(records), goals(records)
    result = {
        "machine": machine,
        "config": {k: str(v) if isinstance(v, Path) else v
                   for k, v in replace(cfg, endpoints=()).__dict__.items() if k != "slo"}
        | {"slo": cfg.slo.__dict__, "endpoints": [e.__dict__ for e in cfg.endpoints]},
        "contenders": [r.to_dict() for r in records],
        "ratios": ratio_table,
        "goals": [g.__dict__ for g in goal_list],
        "export_bench": export_rows,
    }
    write_json(cfg.out / "suite.json", result)
    from durable import atomic_write_text

    atomic_write_text(cfg.out / "suite.md", markdown_report(records, ratio_table, goal_list, machine,
                                                            export_rows, cfg.slo.p99_ms))
    plot_curves(records, cfg.out / "curves.png")
    return result


