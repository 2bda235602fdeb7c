"""``recdrill audit``: verify the one audit chain and show its entries.

Exit codes: 0 the chain is intact (warnings allowed); 1 some problem is an error; 2 usage.
JSON on stdout, each problem named on stderr. ``--log`` falls back to ``$RECDRILL_AUDIT_LOG``,
then ``security.paths.audit_log_path()``.

Example:
    $ recdrill audit verify
    $ recdrill audit show --last 20 --action drill
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from security.audit import AuditLog
from security.audit_check import AuditReport
from security.paths import audit_log_path

__all__ = ["EXIT_BROKEN", "EXIT_INTACT", "app", "run_verify"]

EXIT_INTACT, EXIT_BROKEN = 0, 1

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The audit chain: every admin action, drill, publish and data read.")

LogOption = Annotated[Path | None, typer.Option(
    "--audit", "--log", envvar="RECDRILL_AUDIT_LOG",
    help="Audit log (JSONL); default <state dir>/audit.jsonl.")]


def run_verify(log: Path | None = None, expected_head: str | None = None) -> AuditReport:
    """Check ``log`` (default: the one audit log) and name every problem on stderr."""
    report = AuditLog(log or audit_log_path()).check(expected_head)
    for problem in report.problems:
        print(f"{problem.severity}: {problem.describe(report.path)}", file=sys.stderr)
    return report


@app.command()
def verify(
    log: LogOption = None,
    expected_head: Annotated[str | None, typer.Option(
        help="A head hash known from before: must still be in the chain.")] = None,
) -> None:
    """Check the hash chain and its anchor; list every edited, dropped, reordered or truncated
    entry. Exit 0 when intact, 1 on any error."""
    report = run_verify(log, expected_head)
    print(json.dumps(report.to_dict(), indent=2))
    if not report.ok:
        print(f"audit chain broken: {len(report.errors)} error(s); first: {report.summary()}",
              file=sys.stderr)
        raise typer.Exit(EXIT_BROKEN)


@app.command()
def show(
    log: LogOption = None,
    last: Annotated[int | None, typer.Option(min=1, help="Only the last N entries.")] = None,
    action: Annotated[str | None, typer.Option(
        help="Only this action, or a family: 'drill' matches drill.start and drill.finish.")
    ] = None,
) -> None:
    """Print entries as JSON lines, oldest first (not verified: use `verify`)."""
    parsed = AuditLog(log or audit_log_path()).lines()
    for line in parsed:
        if line.entry is None:
            print(f"warning: line {line.number} is not an entry ({line.error})", file=sys.stderr)
    entries = [ln.entry for ln in parsed if ln.entry is not None]
    if action:
        entries = [e for e in entries if e.action == action or e.action.startswith(action + ".")]
    for entry in entries[-last:] if last else entries:
        print(json.dumps(asdict(entry), sort_keys=True))


if __name__ == "__main__":
    app()
