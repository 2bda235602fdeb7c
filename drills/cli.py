"""``recdrill drill`` / ``python -m drills``: the catalog, and running a drill.

Exit codes: 0 every SLO held; 1 an SLO broke (one line names it and by how much); 2 the drill
could not run (environment, fault or internal error); 3 aborted by an abort condition; 4 the
scenario is invalid; 130 interrupted. ``--dry-run`` prints the plan and touches nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from drills.errors import DrillError, ScenarioError
from durable.options import (
    ARTIFACT,
    CHECKPOINT,
    PUBLIC_KEY,
    RAY_ADDRESS,
    SIGNING_KEY,
    STORE_KEY,
)

__all__ = ["EXIT_ABORTED", "EXIT_BROKEN", "EXIT_ERROR", "EXIT_HELD", "EXIT_INVALID", "app",
           "exit_code"]

EXIT_HELD, EXIT_BROKEN, EXIT_ERROR, EXIT_ABORTED, EXIT_INVALID, EXIT_INTERRUPTED = (
    0, 1, 2, 3, 4, 130)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Disaster-recovery drills: break the running system under load and "
                       "judge every SLO as a plain client sees it.")


def exit_code(journal: dict[str, object]) -> int:
    """The CLI's exit code for a finished drill's journal."""
    status = journal.get("status")
    if status == "completed":
        return EXIT_HELD if journal.get("held") else EXIT_BROKEN
    if status == "aborted":
        return EXIT_ABORTED
    return EXIT_INTERRUPTED if status == "interrupted" else EXIT_ERROR


def _newest_artifact(root: Path) -> Path | None:
    found = sorted(p for p in root.glob("*") if (p / "manifest.json").exists())
    return found[-1] if found else None


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """The shipped scenarios: name, faults, load and what each proves."""
    from rich.console import Console
    from rich.table import Table

    from drills.catalog import describe

    rows = describe()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="recdrill drills (recdrill drill run NAME --dry-run shows a plan)")
    for col in ("name", "faults", "load", "what it proves"):
        table.add_column(col, overflow="fold")
    for row in rows:
        load = row["load"]
        rate = (f"{load['rate_rps']:g} rps" if load["rate_rps"] is not None
                else f"{load['rate_fraction']:g}x saturation")
        first = str(row["description"]).split(". ")[0].rstrip(".") + "."
        table.add_row(str(row["name"]), ", ".join(map(str, row["faults"])),
                      f"{rate} {load['protocol']} {load['client']}, {load['duration_s']:g} s",
                      first)
    Console(width=140).print(table)


@app.command()
def run(
    scenario: str = typer.Argument(..., help="A catalog name (recdrill drill list) or a YAML path."),
    out: Path | None = typer.Option(None, envvar="RECDRILL_DRILL_OUT",
                             help="Report directory (default runs/drills/<name>)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; touch nothing."),
    artifact: Annotated[Path | None, ARTIFACT] = None,
    checkpoint: Annotated[Path | None, CHECKPOINT] = None,
    public_key: Annotated[Path | None, PUBLIC_KEY] = None,
    signing_key: Annotated[Path | None, SIGNING_KEY] = None,
    store_key: Annotated[list[Path] | None, STORE_KEY] = None,
    ray_address: Annotated[str | None, RAY_ADDRESS] = None,
    progress: bool = typer.Option(True, help="Show live progress on stderr."),
    keep_work: bool = typer.Option(False, help="Keep the drill's stores under OUT/work."),
    time_scale: float = typer.Option(1.0, min=0.05, max=10.0, envvar="RECDRILL_DRILL_TIME_SCALE",
                                     help="Multiply the load's and every fault's times (e.g. "
                                          "0.5 for a shortened run); SLO limits are unchanged."),
    audit_log: Path | None = typer.Option(None, "--audit", envvar="RECDRILL_AUDIT_LOG",
                                          help="Audit log the drill's start and finish go to "
                                               "(default <state dir>/audit.jsonl)."),
    token: str | None = typer.Option(None, "--token", envvar="RECDRILL_TOKEN",
                                     help="An operator token: needed once the token table "
                                          "holds any (recdrill token create).",
                                     show_default=False),
    tokens: Path | None = typer.Option(None, "--tokens", envvar="RECDRILL_TOKENS",
                                       help="Token table (default: <key dir>/tokens.json)."),
) -> None:
    """Run one drill; exit 0 only when every SLO held. Running a drill is an operator's act:
    once tokens are in use it needs one of role operator or above, named in the audit log.

    Defaults: the newest artifact under runs/demo/artifacts, runs/demo/checkpoint when present,
    the user's signing keys (~/.config/recdrill/keys), a fresh store key (only the first
    --store-key is used: the drill's stores are new), an embedded Ray cluster."""
    from drills.catalog import resolve
    from drills.loader import load_scenario
    from drills.plan import plan_text

    try:
        path = resolve(scenario)
        spec = load_scenario(path)
        if time_scale != 1.0:
            spec = spec.scaled(time_scale)
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from None
    except ValidationError as exc:
        why = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        print(f"invalid scenario: {path} at --time-scale {time_scale:g}: {why}", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from None
    if dry_run:
        print(plan_text(spec, source=str(path)))
        return
    from security.errors import AccessDenied
    from security.paths import tokens_path
    from security.tokens import Role, TokenTable, require

    try:
        principal = require(TokenTable(tokens or tokens_path()), token, Role.OPERATOR)
    except AccessDenied as exc:
        print(f"drill refused ({exc.status}): {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_ERROR) from None
    from export.keys import private_key_path, public_key_path

    artifact = artifact or _newest_artifact(Path("runs/demo/artifacts"))
    if artifact is None or not (artifact / "manifest.json").exists():
        print("no artifact to serve: pass --artifact DIR (a signed artifact), or run "
              "`recdrill demo` first", file=sys.stderr)
        raise typer.Exit(EXIT_ERROR)
    default_ckpt = Path("runs/demo/checkpoint")
    checkpoint = checkpoint or (default_ckpt if (default_ckpt / "sequences.npz").exists() else None)
    public_key = public_key or public_key_path()
    signing_key = signing_key or (private_key_path() if private_key_path().exists() else None)
    from drills.runner import RunOptions, run_drill
    from drills.system import DrillInputs

    inputs = DrillInputs(artifact.resolve(), public_key.resolve(),
                         checkpoint.resolve() if checkpoint else None,
                         signing_key.resolve() if signing_key else None,
                         store_key[0].resolve() if store_key else None)
    out = (out or Path("runs/drills") / spec.title).resolve()
    try:
        journal = run_drill(spec, RunOptions(out, inputs, ray_address, progress, keep_work,
                                             audit_log, principal.name if principal else None))
    except DrillError as exc:
        print(f"drill error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_ERROR) from None
    _finish(journal)


def _finish(journal: dict[str, object]) -> None:
    from rich.console import Console

    from drills.report import console_table

    err = Console(stderr=True, width=120)
    err.print(console_table(journal))
    paths = journal.get("paths", {})
    err.print(f"report: {paths}")
    code = exit_code(journal)
    if code == EXIT_HELD:
        print(f"HELD: every SLO of {journal['title']} held")
    elif code == EXIT_BROKEN:
        print(f"BROKEN: {journal.get('breach')}")
    elif code == EXIT_ABORTED:
        print(f"ABORTED: {journal.get('breach')}")
    else:
        print(f"ERROR: {journal.get('error')}")
    raise typer.Exit(code)


def main() -> None:
    app()
