"""A drill's report from its journal: ``report.md`` (read in ten seconds), ``timeline.png``
(p99, success, NDCG@10 — the recommender's, and the searches' when the drill sends any — and
degraded share per second, faults shaded), ``journal.json`` and a verdict table for the
terminal.

The journal is the plain JSON-ready dict the runner records; nothing here re-judges it.

Example:
    >>> journal = {"title": "t", "status": "completed", "held": True, "verdicts": []}
    >>> render_markdown(journal).splitlines()[0]
    '# HELD: t'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from durable import atomic_write_text, atomic_writer

__all__ = ["console_table", "headline", "plot_timeline", "render_markdown", "write_report"]

_DASH = "—"
_OBSERVED_FORMAT = {"success_ratio": "{:.4f}", "p99_ms": "{:.1f} ms", "ndcg10": "{:.3f}x",
                    "search_ndcg10": "{:.3f}x", "degraded_share": "{:.3f}",
                    "recovery_s": "{:.1f} s"}
_SEARCH_COLOR = "tab:blue"


def headline(journal: Mapping[str, Any]) -> str:
    """The verdict in one line: HELD, BROKEN (with the worst breach), ABORTED, or ERROR (or
    another unfinished status, e.g. INTERRUPTED) with the error.

    Example:
        >>> headline({"status": "completed", "held": False, "breach": "p99 broke in kill: 2x"})
        'BROKEN: p99 broke in kill: 2x'
    """
    status = journal.get("status")
    if status not in ("completed", "aborted"):  # error, interrupted, or never finished
        line = f"{str(status or 'error').upper()}: {journal.get('error') or 'the drill failed'}"
    elif status == "aborted":
        aborts = [e for e in journal.get("events", ()) if e.get("kind") == "abort"]
        line = f"ABORTED: {aborts[-1]['message'] if aborts else 'an abort condition fired'}"
    elif journal.get("held"):
        line = f"HELD: {journal.get('title', 'the drill')}"
    else:
        line = f"BROKEN: {journal.get('breach') or 'no SLO was judged'}"
    if not _load_valid(journal):
        line += " (measurement suspect: the load generator was not valid)"
    return line


def render_markdown(journal: Mapping[str, Any]) -> str:
    """The whole report as Markdown; the first line is :func:`headline`."""
    verdicts = list(journal.get("verdicts", ()))
    kept = sum(bool(v.get("held")) for v in verdicts)
    out = [f"# {headline(journal)}", ""]
    if not _load_valid(journal):
        reasons = "; ".join(journal.get("load_summary", {}).get("invalid_reasons", ())) or "?"
        out += [(f"> **⚠ The load generator was not valid ({reasons}).** The measurement "
                 "itself is suspect: rerun with a lower rate or more generator processes."), ""]
    if journal.get("status") == "aborted" and journal.get("breach"):
        out += [f"Worst breach: {journal['breach']}", ""]
    about = f"**{journal.get('title', '')}**"
    if journal.get("description"):
        about += f": {journal['description']}"
    out += [about, "", (f"{kept} of {len(verdicts)} checks held · status "
                        f"{journal.get('status', '?')} · {journal.get('started_at', '?')} → "
                        f"{journal.get('ended_at', '?')}"), ""]
    out += _verdict_section(verdicts)
    out += _phase_section(journal.get("phases", ()))
    out += ["![timeline](timeline.png)", ""]
    out += _fault_section(journal.get("faults", ()), journal.get("rto_s", {}))
    out += _rollback_section(journal.get("events", ()))
    out += _environment_section(journal)
    out += ["## Events", ""]
    out += [f"- {_seconds(e.get('t_s'))} `{e.get('kind', '?')}` {e.get('message', '')}"
            for e in journal.get("events", ())] or ["none recorded"]
    out += ["", ("Per-second plot: [timeline.png](timeline.png) · full record: "
                 "[journal.json](journal.json)"), ""]
    return "\n".join(out)


def console_table(journal: Mapping[str, Any]) -> Table:
    """The verdict table for the terminal, titled with :func:`headline`."""
    table = Table(title=headline(journal), title_justify="left")
    for column in ("SLO", "phase", "observed", "limit", "held", "detail"):
        table.add_column(column, overflow="fold")
    for v in journal.get("verdicts", ()):
        mark = Text("✓", style="green") if v.get("held") else Text("✗", style="bold red")
        table.add_row(Text(str(v.get("slo", ""))), Text(str(v.get("phase", ""))),
                      Text(_observed(v)), Text(str(v.get("limit", ""))), mark,
                      Text(str(v.get("detail", ""))))
    return table


def plot_timeline(journal: Mapping[str, Any], path: Path) -> Path:
    """Four stacked panels over the drill's seconds, fault windows shaded; written atomically.

    Panels: p99 latency of successes (log scale), success ratio, NDCG@10 (the recommender's
    in black, the searches' in blue when measured), degraded share. Dashed lines are the
    scenario's bounds; a red line marks an abort.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # a Figure on its own Agg canvas: no pyplot state, no GUI, nothing global switched
    fig = Figure(figsize=(10, 9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True)
    fig.suptitle(headline(journal)[:110], fontsize=10, horizontalalignment="left", x=0.01)
    seconds = list(journal.get("timeline", ()))
    x = [float(w["start_s"]) for w in seconds]
    series = [("p99 (ms)", [_nan(w.get("p99_ms")) for w in seconds]),
              ("success ratio", [_nan(w.get("success_ratio")) for w in seconds]),
              ("NDCG@10", [_nan(w.get("ndcg10")) for w in seconds]),
              ("degraded share", [_nan(w["degraded"] / w["ok"] if w.get("ok") else None)
                                  for w in seconds])]
    search = [_nan(w.get("search_ndcg10")) for w in seconds]
    for i, (ax, (label, y)) in enumerate(zip(axes, series, strict=True)):
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
        drawn = _draw_series(ax, x, y, seconds, "black", "recommend")
        if i == 2 and _draw_series(ax, x, search, seconds, _SEARCH_COLOR, "search"):
            ax.legend(loc="lower left", fontsize=8)
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center",
                    va="center", color="gray")
    if any(math.isfinite(v) and v > 0 for v in series[0][1]):
        axes[0].set_yscale("log")
    axes[1].set_ylim(-0.02, 1.02)
    axes[3].set_ylim(-0.02, 1.02)
    _draw_bounds(axes, journal)
    _draw_faults(axes, journal)
    axes[-1].set_xlabel("seconds from the start of the load")
    if x:
        axes[-1].set_xlim(min(x), max(float(w["end_s"]) for w in seconds))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as fh:
        fig.savefig(fh, format="png", dpi=100)
    return path


def write_report(journal: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``journal.json``, ``report.md`` and ``timeline.png`` into ``out_dir``, atomically.

    The journal goes first, so that it survives a failure to render the rest.

    Example:
        >>> write_report(journal, Path("drill-out"))  # doctest: +SKIP
        {'journal': PosixPath('drill-out/journal.json'), ...}
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"journal": out_dir / "journal.json", "report": out_dir / "report.md",
             "timeline": out_dir / "timeline.png"}
    atomic_write_text(paths["journal"],
                      json.dumps(journal, sort_keys=True, indent=2, default=str) + "\n")
    atomic_write_text(paths["report"], render_markdown(journal))
    plot_timeline(journal, paths["timeline"])
    return paths


# --- markdown sections ---------------------------------------------------------------------


def _verdict_section(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["## Verdicts", ""]
    if not verdicts:
        return [*out, "No SLO was judged.", ""]
    out += _table(["SLO", "phase", "observed", "limit", "held"],
                  [[v.get("slo"), v.get("phase"), _observed(v), v.get("limit"),
                    "✓" if v.get("held") else "✗"] for v in verdicts])
    misses = [v for v in verdicts if not v.get("held")]
    if misses:
        out += ["**Misses**", ""]
        out += [f"- {v.get('slo')} in {v.get('phase')}: {v.get('detail')}" for v in misses]
        out.append("")
    return out


def _phase_section(phases: Sequence[Mapping[str, Any]]) -> list[str]:
    searched = any(w.get("searches") for w in phases)
    rows = []
    for w in phases:
        ok, offered = w.get("ok", 0), w.get("offered", 0)
        row = [w.get("label"), f"{w.get('start_s', 0):g}–{w.get('end_s', 0):g} s",
               f"{offered:,}", _fmt(w.get("success_ratio"), "{:.4f}"),
               f"{offered - ok:,}", _fmt(w.get("p50_ms"), "{:.1f} ms"),
               _fmt(w.get("p99_ms"), "{:.1f} ms"), _fmt(w.get("max_ms"), "{:.1f} ms"),
               _fmt(w.get("ndcg10"), "{:.4f}")]
        if searched:
            row += [_fmt(w.get("search_recall10"), "{:.4f}"),
                    _fmt(w.get("search_ndcg10"), "{:.4f}"),
                    _fmt(w.get("search_p99_ms"), "{:.1f} ms")]
        rows.append([*row, _fmt(w.get("degraded", 0) / ok if ok else None, "{:.3f}")])
    header = ["phase", "window", "offered", "success", "failed", "p50", "p99", "max",
              "NDCG@10", *(["search Recall@10", "search NDCG@10", "search p99"] if searched
                           else []), "degraded share"]
    return ["## Phases", "", *(_table(header, rows) if rows else ["No phase was measured.", ""])]


def _fault_section(faults: Sequence[Mapping[str, Any]], rto_s: Mapping[str, Any]) -> list[str]:
    out = ["## Faults", ""]
    if not faults:
        return [*out, "No fault was injected.", ""]
    for f in faults:
        name = f.get("name", "?")
        out += [f"### {name} ({f.get('fault', '?')})", "",
                (f"- window {f.get('at_s', 0):g}–{f.get('end_s', 0):g} s, injected at "
                 f"{_seconds(f.get('injected_at_s'))}; targets: "
                 f"{', '.join(map(str, f.get('targets', ()))) or 'none'}")]
        if name in rto_s:
            rto = rto_s[name]
            out.append(f"- RTO: {'never regained' if rto is None else f'{rto:g} s'}")
        for key in ("proof", "facts"):
            items = f.get(key) or {}
            out.append(f"- {key}: " + ("; ".join(f"{k} = {_value(v)}" for k, v in items.items())
                                       if items else "none recorded"))
        if f.get("error"):
            out.append(f"- **error**: {f['error']}")
        out.append("")
    return out


def _rollback_section(events: Sequence[Mapping[str, Any]]) -> list[str]:
    rollbacks = [e for e in events if e.get("kind") == "rollback"]
    lines = [f"- {_seconds(e.get('t_s'))} {e.get('message', '')}" for e in rollbacks]
    return ["## Rollbacks", "", *(lines or ["none performed"]), ""]


def _environment_section(journal: Mapping[str, Any]) -> list[str]:
    env = journal.get("environment") or {}
    load = env.get("load") or {}
    summary = journal.get("load_summary") or {}
    latency = summary.get("latency_ms") or {}
    out = ["## Environment", "",
           (f"- mode {env.get('mode', '?')}, Ray at {env.get('ray_address', '?')}, version "
            f"{env.get('version', '?')}"),
           f"- nodes: {', '.join(_value(n) for n in env.get('nodes', ())) or 'unknown'}",
           (f"- load: {_fmt(load.get('rate_rps'), '{:g}')} req/s over "
            f"{_fmt(load.get('duration_s'), '{:g}')} s, {load.get('protocol', '?')} via the "
            f"{load.get('client', '?')} client to "
            f"{', '.join(load.get('addresses', ())) or '?'}"
            + (f"; {load['search_share']:.0%} of the requests are held-out searches "
               f"({load.get('search_queries', '?')} test queries)"
               if load.get("search_share") else ""))]
    if summary:
        out.append(f"- measured: {summary.get('offered', 0):,} offered, "
                   f"{summary.get('ok', 0):,} ok (success "
                   f"{_fmt(summary.get('success_ratio'), '{:.4f}')}), p50 "
                   f"{_fmt(latency.get('p50_ms'), '{:.1f} ms')}, p99 "
                   f"{_fmt(latency.get('p99_ms'), '{:.1f} ms')}, max "
                   f"{_fmt(latency.get('max_ms'), '{:.1f} ms')}; generator "
                   f"{'valid' if _load_valid(journal) else '**not valid**'}")
    search = summary.get("search") or {}
    if search:
        slat, quality = search.get("latency_ms") or {}, search.get("quality") or {}
        out.append(f"- searches: {search.get('offered', 0):,} offered, {search.get('ok', 0):,} "
                   f"ok (success {_fmt(search.get('success_ratio'), '{:.4f}')}), p50 "
                   f"{_fmt(slat.get('p50_ms'), '{:.1f} ms')}, p99 "
                   f"{_fmt(slat.get('p99_ms'), '{:.1f} ms')}; Recall@10 "
                   f"{_fmt(quality.get('recall'), '{:.4f}')}, NDCG@10 "
                   f"{_fmt(quality.get('ndcg'), '{:.4f}')} over {quality.get('scored', 0):,} "
                   f"scored; BM25 answered {_fmt(search.get('degraded_share'), '{:.3f}')}")
    out.append("")
    replicas = env.get("replicas") or []
    if replicas:
        out += _table(["rank", "node", "pid", "http", "grpc"],
                      [[r.get(k) for k in ("rank", "node", "pid", "http", "grpc")]
                       for r in replicas])
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return _DASH if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


# --- plot pieces ---------------------------------------------------------------------------


def _draw_bounds(axes: Sequence[Any], journal: Mapping[str, Any]) -> None:
    slos = ((journal.get("scenario") or {}).get("steady_state_hypothesis") or {}).get("slos", ())
    base: Mapping[str, Any] = next(
        (p for p in journal.get("phases", ()) if p.get("label") == "baseline"), {})
    for slo in slos:
        kind = slo.get("kind")
        if kind == "p99_ms" and slo.get("max_ms"):
            axes[0].axhline(slo["max_ms"], color="gray", linestyle="--", linewidth=0.8)
        elif kind == "success_ratio":
            axes[1].axhline(slo["min"], color="gray", linestyle="--", linewidth=0.8)
        elif kind == "ndcg10" and base.get("ndcg10"):
            axes[2].axhline(slo["min_ratio"] * base["ndcg10"], color="gray", linestyle="--",
                            linewidth=0.8)
        elif kind == "search_ndcg10" and base.get("search_ndcg10"):
            axes[2].axhline(slo["min_ratio"] * base["search_ndcg10"], color=_SEARCH_COLOR,
                            linestyle="--", linewidth=0.8, alpha=0.6)
        elif kind == "degraded_share":
            axes[3].axhline(slo["max"], color="gray", linestyle="--", linewidth=0.8)


def _draw_series(ax: Any, x: Sequence[float], y: Sequence[float],
                 seconds: Sequence[Mapping[str, Any]], color: str, label: str) -> bool:
    """Steps of ``y`` per second (False, nothing drawn, when none is finite)."""
    if not any(math.isfinite(v) for v in y):
        return False
    # the last second is drawn to its end, not cut at its start
    ax.step([*x, float(seconds[-1]["end_s"])], [*y, y[-1]], where="post", color=color,
            linewidth=1, label=label)
    ax.plot([t + 0.5 for t in x], y, ".", color=color, markersize=3)
    return True


def _draw_faults(axes: Sequence[Any], journal: Mapping[str, Any]) -> None:
    from matplotlib import colormaps

    colors = colormaps["tab10"]
    for i, f in enumerate(journal.get("faults", ())):
        start, end = float(f.get("at_s", 0)), float(f.get("end_s", f.get("at_s", 0)))
        for ax in axes:
            ax.axvspan(start, end, color=colors(i % 10), alpha=0.15, linewidth=0)
        axes[0].text(start, 1.01, f.get("name", "?"), transform=axes[0].get_xaxis_transform(),
                     fontsize=8, color=colors(i % 10), va="bottom")
    aborts = [e.get("t_s") for e in journal.get("events", ())
              if e.get("kind") == "abort" and e.get("t_s") is not None]
    seconds = journal.get("timeline", ())
    if not aborts and journal.get("status") == "aborted" and seconds:
        aborts = [float(seconds[-1]["end_s"])]
    for t in aborts:
        for ax in axes:
            ax.axvline(t, color="red", linewidth=1.5)
        axes[0].text(t, 1.01, " abort", transform=axes[0].get_xaxis_transform(), fontsize=8,
                     color="red", va="bottom")


# --- formatting ----------------------------------------------------------------------------


def _load_valid(journal: Mapping[str, Any]) -> bool:
    return bool((journal.get("load_summary") or {}).get("valid", True))


def _observed(verdict: Mapping[str, Any]) -> str:
    value = verdict.get("observed")
    if value is None:
        return "never" if verdict.get("kind") == "recovery_s" and verdict.get("miss") else _DASH
    spec = _OBSERVED_FORMAT.get(str(verdict.get("kind")))
    if spec and isinstance(value, int | float) and not isinstance(value, bool):
        return spec.format(value)
    return _value(value)


def _fmt(value: Any, spec: str) -> str:
    return _DASH if value is None else spec.format(value)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str | int):
        return str(value)
    return json.dumps(value, default=str, sort_keys=True)


def _seconds(t_s: Any) -> str:
    return _DASH if t_s is None else f"{float(t_s):.2f} s"


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)
