"""Suite and run outputs: JSON, a Markdown table and PNG plots (matplotlib, Agg backend),
with the machine and package versions recorded.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.loadgen.compare import ContenderRecord, Goal
from durable.machine import cpu_model

__all__ = ["PACKAGES", "machine_info", "machine_section", "markdown_report", "plot_curves", "plot_timeline",
           "write_json"]

PACKAGES = ("onnxruntime", "torch", "ray", "fastapi", "uvicorn", "flask", "aiohttp", "grpcio",
            "hdrhistogram", "numpy", "pydantic", "uvloop")


def machine_info() -> dict[str, Any]:
    """CPU model and count, memory, OS, Python and the versions of the packages that matter."""
    cpu = cpu_model()
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "os": platform.platform(), "python": sys.version.split()[0],
            "load_avg": [round(x, 2) for x in os.getloadavg()], "versions": versions}


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    from durable import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    return path


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def markdown_report(records: Sequence[ContenderRecord], ratio_table: dict[str, dict[str, Any]],
                    goal_list: Sequence[Goal], machine: dict[str, Any],
                    export_rows: Sequence[dict[str, Any]] = (), slo_p99_ms: float = 100.0) -> str:
    """The suite's Markdown: contenders, goals, export benchmark, machine."""
    lines = ["# recdrill bench suite\n",
             (f"Saturation = goodput of the highest offered rate with p99 ≤ {slo_p99_ms:g} ms, "
              "≥ 99% success and goodput ≥ 95% of offered (open loop, latency from the intended "
              "send time). Ratios are to baselines measured in the same run.\n"),
             ("| contender | transport | saturation req/s | p50 ms | p99 ms | max ms | "
              "p99/p50 @50% | goodput @2× / sat | × flask-torch | × fastapi-ort | HR@10 | "
              "NDCG@10 | gen lag p99 ms | gen CPU |"),
             "|" + "---|" * 14]
    for r in records:
        s, rat = r.saturation, ratio_table.get(r.name, {})
        tail = (r.half.p99_ms / r.half.p50_ms if r.half and r.half.p50_ms and r.half.p99_ms
                else None)
        keep = (r.double.goodput_rps / r.saturation_rps if r.double and r.saturation_rps
                else None)
        if r.error:
            lines.append(f"| {r.name} | {r.transport} | failed: {r.error.splitlines()[0][:100]} |" + " |" * 11)
            continue
        lines.append(
            f"| {r.name} | {r.transport} | {_f(r.saturation_rps)} | {_f(s and s.p50_ms, 2)} | "
            f"{_f(s and s.p99_ms, 2)} | {_f(s and s.max_ms, 1)} | {_f(tail, 2)} | "
            f"{_f(keep, 2)} | {_f(rat.get('flask-torch'), 2)} | {_f(rat.get('fastapi-ort'), 2)} | "
            f"{_f(s and s.hr10, 4)} | {_f(s and s.ndcg10, 4)} | {_f(s and s.lag_p99_ms, 2)} | "
            f"{_f(s and s.generator_cpu_share, 2)} |")
    lines += ["", "## Goals (best recdrill contender)", "", "| goal | target | measured | met |",
              "|---|---|---|---|"]
    for g in goal_list:
        met = "–" if g.met is None else ("yes" if g.met else "**no**")
        lines.append(f"| {g.name} | {g.target} | {_f(g.measured, 2)} | {met} |")
    if export_rows:
        lines += ["", "## ONNX vs PyTorch eager, fp32 vs int8 (bench.export_bench)", "",
                  "| backend | b1 p50/p99 ms | b8 p50/p99 ms | b32 p50/p99 ms | NDCG@10 | HR@10 |",
                  "|---|---|---|---|---|---|"]
        for row in export_rows:
            cells = " | ".join(f"{row.get(f'batch{b}_p50_ms')}/{row.get(f'batch{b}_p99_ms')}"
                               for b in (1, 8, 32))
            lines.append(f"| {row.get('backend')} | {cells} | {row.get('ndcg@10')} | "
                         f"{row.get('hr@10')} |")
    lines += machine_section(machine)
    return "\n".join(lines)


def machine_section(machine: dict[str, Any]) -> list[str]:
    """The "## Machine" lines of a Markdown report (from :func:`machine_info`)."""
    v = machine.get("versions", {})
    return ["", "## Machine", "",
            (f"{machine.get('cpu')}, {machine.get('cores')} cores, "
             f"{machine.get('memory_gib')} GiB, {machine.get('os')}, Python "
             f"{machine.get('python')}, load average at start {machine.get('load_avg')}."), "",
            ", ".join(f"{k} {val}" for k, val in v.items() if val), ""]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: Sequence[ContenderRecord], path: Path) -> Path:
    """Latency–throughput curves (p50/p99 vs goodput) and goodput vs offered rate."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for i, r in enumerate(x for x in records if x.steps):
        steps = sorted(r.steps, key=lambda s: s.offered_rps)
        color = f"C{i % 10}"
        good = [s.goodput_rps for s in steps]
        ax1.plot(good, [s.p99_ms or float("nan") for s in steps], "o-", color=color,
                 label=f"{r.name} p99")
        ax1.plot(good, [s.p50_ms or float("nan") for s in steps], "x--", color=color, alpha=0.6)
        ax2.plot([s.offered_rps for s in steps], good, "o-", color=color, label=r.name)
    ax1.set(xscale="log", yscale="log", xlabel="goodput (req/s)",
            ylabel="latency from intended send (ms); solid p99, dashed p50",
            title="Latency vs throughput")
    ax2.set(xscale="log", yscale="log", xlabel="offered (req/s)", ylabel="goodput (req/s)",
            title="Goodput vs offered load")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timeline(summary: dict[str, Any], path: Path) -> Path:
    """Per-second sent/ok/errors, p50/p99/max and NDCG@10 of one run (phases shaded)."""
    plt = _pyplot()
    rows = summary.get("timeline", [])
    t = [r["start_s"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    axes[0].plot(t, [r["offered"] for r in rows], label="offered")
    axes[0].plot(t, [r["ok"] for r in rows], label="ok")
    axes[0].plot(t, [r["errors"] + r["dropped"] for r in rows], label="errors + dropped")
    axes[0].plot(t, [r["degraded"] for r in rows], label="degraded")
    axes[0].set_ylabel("requests / s")
    for key in ("p50_ms", "p99_ms", "max_ms"):
        axes[1].plot(t, [r[key] if r[key] is not None else float("nan") for r in rows], label=key)
    axes[1].set(yscale="log", ylabel="latency (ms)")
    axes[2].plot(t, [r["ndcg10"] if r["ndcg10"] is not None else float("nan") for r in rows],
                 label="NDCG@10")
    axes[2].plot(t, [r["hr10"] if r["hr10"] is not None else float("nan") for r in rows],
                 label="HR@10")
    axes[2].set(xlabel="seconds (by intended send time)", ylabel="quality")
    for phase in summary.get("phases", []):
        for ax in axes:
            ax.axvspan(phase["start_s"], phase["end_s"], alpha=0.08, color="grey")
        axes[0].annotate(phase["label"], (phase["start_s"], 0), fontsize=8)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
