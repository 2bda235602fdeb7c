"""``recdrill compliance``: where user data lives, key ages, pending forgets; exit 1 when out
of policy.

Tables for humans on stdout, or ``--json``; exit codes 0 in policy, 1 out of policy (each
violation named with what to do), 2 bad usage. Importing this module is light: the gathering
runs inside the command.

Example:
    $ recdrill compliance --data data/synth --artifacts runs/demo/artifacts --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from durable.options import SIGNING_KEY, STORE, STORE_KEY
from recdrill.data_cli import ARTIFACTS, CHECKPOINTS, DATA, USER_COLUMNS

if TYPE_CHECKING:
    from recdrill.compliance import Report

__all__ = ["EXIT_IN_POLICY", "EXIT_OUT_OF_POLICY", "EXIT_USAGE", "compliance", "render"]

EXIT_IN_POLICY, EXIT_OUT_OF_POLICY, EXIT_USAGE = 0, 1, 2


def render(report: Report) -> None:
    """Print ``report`` as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    from recdrill.compliance import age_days

    console = Console()
    now = report.facts.now
    places = Table(title="Where user data lives")
    places.add_column("kind")
    places.add_column("place", overflow="fold")
    for column in ("user files", "sealed / encrypted", "user ids"):
        places.add_column(column)
    for p in report.facts.places:
        users = p.user_files
        counted = p.kind in ("data", "checkpoint", "artifact")
        protected = (f"{p.encrypted_blobs}/{p.blobs} blobs" if p.kind == "store"
                     else f"{sum(f.sealed for f in users)}/{len(users)}" if users else "-")
        places.add_row(p.kind, p.where, str(len(users)) if counted else "-", protected,
                       ", ".join(sorted(p.forms())) or "none")
    console.print(places)
    keys = Table(title=f"Keys (max age {report.policy.max_key_age_days:g} days)")
    keys.add_column("key")
    keys.add_column("path", overflow="fold")
    keys.add_column("age (days)")
    for k in report.facts.keys:
        keys.add_row(k.name, k.path, "missing" if k.created is None
                     else f"{age_days(k.created, now):.1f}")
    console.print(keys)
    if report.facts.pending:
        pending = Table(title=f"Pending forget requests (max {report.policy.max_pending_days:g} "
                              "days)")
        for column in ("ticket", "pseudonym", "age (days)", "versions", "stored pending"):
            pending.add_column(column)
        for r in report.facts.pending:
            pending.add_row(r.ticket, r.pseudonym, f"{age_days(r.requested_at, now):.1f}",
                            str(len(r.versions)), str(r.stored_pending))
        console.print(pending)
    for f in report.findings:  # a list, not a table: messages and fixes are sentences
        mark = "[red]VIOLATION[/]" if f.severity == "violation" else "[yellow]notice[/]"
        console.print(f"{mark} {f.code} [bold]{f.subject}[/]: {f.message}", highlight=False)
        console.print(f"    what to do: {f.fix}", highlight=False)
    verdict = ("[green]IN POLICY[/]" if report.in_policy
               else f"[red]OUT OF POLICY[/]: {len(report.violations)} violation(s)")
    console.print(verdict)


def compliance(
    data: Annotated[list[str] | None, DATA] = None,
    checkpoint: Annotated[list[Path] | None, CHECKPOINTS] = None,
    artifacts: Annotated[list[Path] | None, ARTIFACTS] = None,
    store: Annotated[list[str] | None, STORE] = None,
    store_key: Annotated[list[Path] | None, STORE_KEY] = None,
    signing_key: Annotated[Path | None, SIGNING_KEY] = None,
    user_col: Annotated[list[str] | None, USER_COLUMNS] = None,
    max_key_age_days: Annotated[float, typer.Option(
        min=0, envvar="RECDRILL_MAX_KEY_AGE_DAYS", show_envvar=True,
        help="Oldest a key may be, in days.")] = 365.0,
    max_pending_days: Annotated[float, typer.Option(
        min=0, envvar="RECDRILL_MAX_FORGET_PENDING_DAYS", show_envvar=True,
        help="Longest a forget request may stay pending, in days.")] = 30.0,
    require_encryption: Annotated[bool, typer.Option(
        envvar="RECDRILL_REQUIRE_ENCRYPTION", show_envvar=True,
        help="Raw data holding users must be sealed (`recdrill data encrypt`).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Where user data lives, whether it is encrypted, key ages, pending forget requests;
    exit 1 naming each violation when out of policy."""
    from recdrill.compliance import Policy, assess
    from recdrill.compliance_gather import KeyLocations, gather
    from recdrill.places import ScopeError, default_scope
    from recdrill.user_tables import DEFAULT_USER_COLUMNS

    try:
        scope = default_scope(data or (), checkpoint or (), artifacts or (), store or (),
                              user_columns=user_col or DEFAULT_USER_COLUMNS,
                              store_key_files=store_key or ())
    except ScopeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    facts = gather(scope, KeyLocations(signing=signing_key, store=tuple(store_key or ())))
    report = assess(facts, Policy(max_key_age_days, max_pending_days, require_encryption))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), default=str))
    else:
        render(report)
    if not report.in_policy:
        raise typer.Exit(EXIT_OUT_OF_POLICY)
