"""The main job: real data → fine-tuned transformer → metrics table → signed artifact → verify.

Every step prints what it measured; the whole run ends with one JSON summary on stdout,
``report.json`` in the output directory and, beside it, ``figures.md``: the README's model
section rendered from that report (``python -m recdrill.figures`` puts it into the README).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from durable import atomic_write_text
from export.errors import ArtifactVerificationError
from export.keys import ensure_signing_key
from export.verify import verify_artifact

console = Console(stderr=True, width=130)


@dataclass
class DemoReport:
    """What each demo step produced, in order."""

    steps: dict[str, Any] = field(default_factory=dict)

    def record(self, name: str, started: float, **values: Any) -> None:
        self.steps[name] = {"seconds": round(time.perf_counter() - started, 2), **values}
        console.print(f"[bold green]✓[/] {name} ({self.steps[name]['seconds']} s)")


def tamper_check(artifact: Path, public_key: Path, victim: str = "model.onnx") -> dict[str, str]:
    """Flip one byte of ``victim`` in a copy of the artifact and show verification refuses it."""
    with tempfile.TemporaryDirectory(prefix="recdrill-tamper-") as tmp:
        copy = Path(tmp) / "artifact"
        shutil.copytree(artifact, copy)
        target = copy / victim
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        try:
            verify_artifact(copy, public_key)
        except ArtifactVerificationError as exc:
            return {"tampered": victim, "refused_file": exc.path, "reason": exc.reason}
    raise RuntimeError(f"a tampered {victim} was accepted: verification is broken")


def run_demo(out: Path, data: str = "ml-100k", max_time_s: float = 540.0,
             progress: bool = True, serve: bool = True,
             drill: str | None = "game-day,region-loss,search-regression",
             drill_time_scale: float = 1.0,
             search_time_s: float | None = 240.0) -> dict[str, Any]:
    """Run the main job into ``out``; returns the summary (also written to report.json).

    ``search_time_s`` caps the search encoder's fine-tuning (None: no product search)."""
    from export.package import package_recommender
    from recdrill.figures import model_markdown
    from training.checkpoint import load_checkpoint
    from training.model import ModelConfig
    from training.pipeline import render_table, run_training
    from training.train import TrainConfig

    report = DemoReport()
    started = time.perf_counter()
    run = run_training(data, out / "checkpoint", ModelConfig(), TrainConfig(max_time_s=max_time_s),
                       progress=progress)
    render_table(run)
    report.record("train_and_evaluate", started, **run.as_dict())

    search = None
    if search_time_s is not None:
        started = time.perf_counter()
        search = out / "search"
        report.record("search_train_and_evaluate", started,
                      **search_step(data, search, search_time_s, progress))

    started = time.perf_counter()
    private, public = ensure_signing_key()
    checkpoint = load_checkpoint(out / "checkpoint")
    artifacts = out / "artifacts"
    parent = _newest_version(artifacts)
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result = package_recommender(checkpoint, artifacts / version, private, public,
                                 version=version, parent=parent, search=search)
    searched = {} if result.search is None else {"search": {
        "parity_max_abs_diff": result.search.parity.max_abs_diff,
        "int8_top10_overlap": result.search.int8_overlap, "fused_ops": result.search.fused_ops,
        "metrics": result.search.metrics, "seconds": round(result.search.seconds, 1)}}
    report.record("export", started, artifact=str(result.path), version=result.version,
                  parent=parent, parity=result.parity.as_dict(),
                  int8_top10_overlap=result.int8_overlap, fused_ops=result.fused_ops, **searched)

    started = time.perf_counter()
    manifest = verify_artifact(result.path, public)
    report.record("verify", started, ok=True, files=[f.path for f in manifest.files])
    started = time.perf_counter()
    report.record("tamper_check", started, **tamper_check(result.path, public))

    if serve:
        from recdrill.demo_serving import publish_and_serve

        started = time.perf_counter()
        _, test_targets = checkpoint.data.split("test")
        targets = dict(zip(checkpoint.data.user_ids, test_targets.tolist()))
        report.record("publish_serve_score", started,
                      **publish_and_serve(result.path, public, private.parent, out, targets))
        for i, name in enumerate(_drills(drill, searchable=search is not None)):
            started = time.perf_counter()  # the first under "drill", the others by name
            report.record("drill" if i == 0 else f"drill-{name}", started,
                          **run_game_day(name, result.path, out, private, public, progress,
                                         drill_time_scale))

    summary = {"beats_baselines": run.beats_baselines(), **report.steps}
    atomic_write_text(out / "report.json", json.dumps(summary, indent=2, sort_keys=True))
    atomic_write_text(out / "figures.md", model_markdown(summary["train_and_evaluate"]) + "\n")
    return summary


def search_step(data: str, out: Path, max_time_s: float, progress: bool) -> dict[str, Any]:
    """Fine-tune the search encoder (replacing an earlier one in ``out``) and print its table
    against BM25 and the pretrained encoder."""
    from training.search_model import FinetuneConfig
    from training.search_train import render_search_table, run_search

    if out.exists():
        shutil.rmtree(out)
    search = run_search(data, out, FinetuneConfig(max_time_s=max_time_s), progress=progress)
    render_search_table(search, console)
    return {"checkpoint": str(out), **search.as_dict()}


def run_game_day(scenario: str, artifact: Path, out: Path, private: Path, public: Path,
                 progress: bool, time_scale: float = 1.0) -> dict[str, Any]:
    """Run a drill (default the game-day) against the fresh artifact on an embedded cluster;
    print its verdict table. The demo goes on whatever the verdict: the table says which SLO
    held, and ``recdrill drill run`` is the gate."""
    from drills import DrillInputs, RunOptions, load_scenario, resolve, run_drill
    from drills.report import console_table

    inputs = DrillInputs(artifact.resolve(), public.resolve(), (out / "checkpoint").resolve(),
                         private.resolve())
    spec = load_scenario(resolve(scenario))
    if time_scale != 1.0:
        spec = spec.scaled(time_scale)
    journal = run_drill(spec, RunOptions((out / "drills" / spec.title).resolve(), inputs,
                                         progress=progress))
    console.print(console_table(journal))
    verdicts = journal["verdicts"]
    return {"scenario": spec.title, "status": journal["status"], "held": journal["held"],
            "breach": journal["breach"], "error": journal["error"],
            "slos_held": sum(v["held"] for v in verdicts), "slos": len(verdicts),
            "rto_s": journal["rto_s"], "report": journal["paths"]["report"],
            "fault_errors": {f["name"]: f["error"] for f in journal["faults"] if f["error"]},
            "timeline": journal["paths"]["timeline"], "journal": journal["paths"]["journal"]}


def _drills(names: str | None, searchable: bool) -> list[str]:
    """The drills to run, in order; those that send searches only when the artifact can
    answer them (a note says which were left out)."""
    from drills import load_scenario, resolve

    out = []
    for name in (n for n in (names or "").split(",") if n):
        if not searchable and load_scenario(resolve(name)).load.search_share > 0:
            console.print(f"[yellow]skipping drill {name}: it sends searches and this run "
                          "trained no search model (--search-time-s 0)[/]")
            continue
        out.append(name)
    return out


def _newest_version(artifacts: Path) -> str | None:
    if not artifacts.exists():
        return None
    versions = sorted(p.name for p in artifacts.iterdir() if (p / "manifest.json").exists())
    return versions[-1] if versions else None
