"""``recdrill token``: create, list and revoke bearer tokens (the table in ``security.tokens``).

Tokens are an admin matter: once the table holds an active admin token, every change and the
listing need one (``--token`` or ``$RECDRILL_TOKEN``); before that, whoever may write the key
directory bootstraps the first admin. Every change lands in the audit chain (``token.create``,
``token.revoke``; the token's id and role, never the token).

Example:
    $ recdrill token create --name ops --role admin
    {"id": "3f9c0a1b", "name": "ops", "role": "admin", "token": "rdt_3f9c0a1b_..."}
    $ RECDRILL_TOKEN=rdt_3f9c... recdrill token revoke ci
"""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path
from typing import Annotated

import typer

from security.paths import tokens_path
from security.tokens import Principal, Role, TokenTable, parse_role

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bearer tokens with roles: reader, operator, admin.")

TablePath = Annotated[Path | None, typer.Option(
    "--tokens", envvar="RECDRILL_TOKENS", help="Token table (default: <key dir>/tokens.json).")]
AdminToken = Annotated[str | None, typer.Option(
    "--token", envvar="RECDRILL_TOKEN", help="An admin token (needed once an admin exists).",
    show_default=False)]
AuditPath = Annotated[Path | None, typer.Option(
    "--audit", envvar="RECDRILL_AUDIT_LOG", help="Audit chain (default: the one log).")]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"token: {message}", err=True)
    return typer.Exit(code)


def _admin(table: TokenTable, token: str | None) -> Principal | None:
    """The admin acting (None while no admin token exists yet); exits 1 when refused."""
    if not any(e.active and parse_role(e.role) == Role.ADMIN for e in table.entries()):
        return None
    if token is None:
        raise _fail("an admin token exists: pass one with --token or $RECDRILL_TOKEN", 1)
    principal = table.authenticate(token)
    if principal is None:
        raise _fail("invalid or revoked token", 1)
    if principal.role < Role.ADMIN:
        raise _fail(f"token {principal.name!r} has role {principal.role}; tokens need admin", 1)
    return principal


def _record(action: str, target: str, principal: Principal | None, audit: Path | None,
            details: dict[str, object]) -> None:
    from security.audit import record

    actor = principal.name if principal else f"{getpass.getuser()}@{socket.gethostname()}"
    record(action, target=target, role="admin", actor=actor, details=details, log=audit)


@app.command("create")
def create(name: Annotated[str, typer.Option(help="Who holds the token (unique while active).")],
           role: Annotated[str, typer.Option(help="reader, operator or admin.")] = "reader",
           tokens: TablePath = None, token: AdminToken = None, audit: AuditPath = None) -> None:
    """Create a token; prints it once (JSON). Only its SHA-256 is stored."""
    table = TokenTable(tokens or tokens_path())
    try:
        wanted = parse_role(role)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    principal = _admin(table, token)
    try:
        secret, entry = table.create(name, wanted)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    _record("token.create", entry.id, principal, audit, {"name": name, "role": entry.role})
    typer.echo(json.dumps({**entry.public(), "token": secret}))


@app.command("list")
def list_tokens(tokens: TablePath = None, token: AdminToken = None,
                revoked: Annotated[bool, typer.Option(help="Include revoked tokens.")] = False,
                ) -> None:
    """The tokens (id, name, role, created, revoked), never a secret or hash; JSON lines."""
    table = TokenTable(tokens or tokens_path())
    _admin(table, token)
    for entry in table.entries():
        if entry.active or revoked:
            typer.echo(json.dumps(entry.public()))


@app.command("revoke")
def revoke(id_or_name: Annotated[str, typer.Argument(help="The token's id or name.")],
           tokens: TablePath = None, token: AdminToken = None, audit: AuditPath = None) -> None:
    """Revoke a token; servers refuse it within about a second."""
    table = TokenTable(tokens or tokens_path())
    principal = _admin(table, token)
    try:
        entry = table.revoke(id_or_name)
    except KeyError as exc:
        raise _fail(str(exc.args[0]), 1) from None
    _record("token.revoke", entry.id, principal, audit, {"name": entry.name, "role": entry.role})
    typer.echo(json.dumps(entry.public()))
