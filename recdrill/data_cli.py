"""``recdrill data``: training's data commands, and the user-data ones: forget, encrypt, keys.

``fetch``, ``synth``, ``train`` and ``search`` are ``python -m training``'s own commands,
loaded (with torch) only when one of them runs or ``recdrill data --help`` lists them; the
commands defined here import nothing heavy. Exit codes: 0 done, 1 forget recorded but still
pending (stored versions or files named on stderr), 2 bad usage or refused before any change,
3 failed part-way (the forget request stays pending: run it again).

Example:
    $ recdrill data keys
    $ recdrill data encrypt data/synth
    $ recdrill data forget u0000042 --data data/synth --artifacts runs/demo/artifacts
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from durable.options import PUBLIC_KEY, SIGNING_KEY, STORE, STORE_KEY

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_PENDING", "EXIT_USAGE", "app"]

EXIT_OK, EXIT_PENDING, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


class _DataGroup(TyperGroup):
    """This module's commands at once; training's only when asked for (they import torch)."""

    def _training(self) -> TyperGroup:
        from training.cli import app as training_app

        return typer.main.get_group(training_app)

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._training().list_commands(ctx)})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return (super().get_command(ctx, cmd_name)
                or self._training().get_command(ctx, cmd_name))


app = typer.Typer(cls=_DataGroup, add_completion=False,
                  help="Data: fetch, synthesise, train; forget a user, seal raw data, keys.")

# The places user data lives in (shared with `recdrill compliance`).
DATA = typer.Option("--data", envvar="RECDRILL_DATA", show_envvar=True,
                    help="Raw data directory or file ('ml-100k': the fetch cache); repeat for "
                         "several. Default: the MovieLens cache, if fetched.")
CHECKPOINTS = typer.Option("--checkpoint", envvar="RECDRILL_CHECKPOINT", show_envvar=True,
                           help="Training checkpoint directory; repeat for several. Default: "
                                "runs/checkpoint, runs/demo/checkpoint, runs/search, "
                                "runs/demo/search (those that exist).")
ARTIFACTS = typer.Option("--artifacts", envvar="RECDRILL_ARTIFACTS", show_envvar=True,
                         help="Artifact directory, or a directory of them; repeat for several. "
                              "Default: runs/demo/artifacts, if it exists.")
USER_COLUMNS = typer.Option("--user-col", help="Name of the user-id column in raw tables "
                                               "(before any ':type'); repeat for several.")


def _fail(code: int, message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _audit_ready(log: Path | None) -> None:
    """Refuse to start when the audit log is broken: the forget could not be recorded."""
    from security.audit import AuditLog
    from security.paths import audit_log_path

    report = AuditLog(log or audit_log_path()).check()
    errors = [p for p in report.errors if p.kind != "missing"]
    if errors:
        _fail(EXIT_USAGE, f"the audit log {report.path} does not verify ({errors[0].kind}: "
                          f"{errors[0].message}); nothing was changed: run `recdrill audit "
                          "verify`, repair or restore the log, then forget again")


def _part_way_errors() -> tuple[type[Exception], ...]:
    """What can stop a forget part-way (a file, key, artifact or store that fails)."""
    from export.errors import ExportError
    from replication.errors import ReplicationError
    from security.errors import SecurityError

    return OSError, ValueError, SecurityError, ExportError, ReplicationError


@app.command()
def forget(
    user: Annotated[str, typer.Argument(help="The user's id as the raw data holds it (clear; "
                                             "only its pseudonym is ever recorded).")],
    data: Annotated[list[str] | None, DATA] = None,
    checkpoint: Annotated[list[Path] | None, CHECKPOINTS] = None,
    artifacts: Annotated[list[Path] | None, ARTIFACTS] = None,
    store: Annotated[list[str] | None, STORE] = None,
    store_key: Annotated[list[Path] | None, STORE_KEY] = None,
    signing_key: Annotated[Path | None, SIGNING_KEY] = None,
    public_key: Annotated[Path | None, PUBLIC_KEY] = None,
    user_col: Annotated[list[str] | None, USER_COLUMNS] = None,
) -> None:
    """Remove USER's events from every stored file, amend and re-sign artifacts, record it.

    Versions in replication stores are found, never rewritten: the request stays pending (exit 1) and names them until they are retired and the forget runs again.
    """
    from recdrill.forget import ForgetKeys, ForgetRefused, run_forget, summary_lines
    from recdrill.places import ScopeError, default_scope
    from recdrill.user_tables import DEFAULT_USER_COLUMNS

    try:
        scope = default_scope(data or (), checkpoint or (), artifacts or (), store or (),
                              user_columns=user_col or DEFAULT_USER_COLUMNS,
                              store_key_files=store_key or ())
    except ScopeError as exc:
        _fail(EXIT_USAGE, str(exc))
        return
    _audit_ready(None)
    keys = ForgetKeys(signing=signing_key, public=public_key, store=tuple(store_key or ()))
    try:
        outcome = run_forget(user, scope, keys)
    except ForgetRefused as exc:
        _fail(EXIT_USAGE, f"{exc} (nothing was changed)")
        return
    except _part_way_errors() as exc:
        _fail(EXIT_FAILED, f"{type(exc).__name__}: {exc}; the forget request stays pending: "
                           "fix the cause and run the same command again")
        return
    for line in summary_lines(outcome):
        typer.echo(line, err=True)
    typer.echo(json.dumps(outcome.to_dict()))
    if outcome.request.status != "done":
        raise typer.Exit(EXIT_PENDING)


@app.command()
def encrypt(
    directory: Annotated[Path, typer.Argument(help="Raw data directory to seal in place.")],
) -> None:
    """Seal every raw data file under DIRECTORY with the data key (AES-256-GCM), in place.

    Files keep their names; files already sealed are left as they are. The key is created
    on first use (`recdrill data keys` shows it).
    """
    from security.audit import record
    from security.datadir import data_key, seal_data_dir
    from security.errors import SecurityError
    from security.keyfiles import key_id_of

    try:
        key = data_key(create=True)
        assert key is not None
        sealed = seal_data_dir(directory, key)
    except SecurityError as exc:
        _fail(EXIT_USAGE, str(exc))
        return
    key_id = key_id_of(key, "data")
    record("data.encrypt", target=str(directory), role="operator",
           details={"files_sealed": len(sealed), "key_id": key_id})
    typer.echo(json.dumps({"directory": str(directory), "key_id": key_id,
                           "sealed": [str(p.relative_to(directory)) for p in sealed]}))


def _key_report(name: str, path: Path, purpose: str, existed: bool) -> dict[str, Any]:
    from security.keyfiles import key_id_of, read_secret

    secret = read_secret(path)
    return {"name": name, "path": str(path), "key_id": key_id_of(secret.key, purpose),
            "created": secret.created.isoformat(timespec="seconds"),
            "age_days": round(secret.age_days(), 1), "created_now": not existed}


@app.command()
def keys() -> None:
    """Create the pseudonym and data keys if missing; print their ids and ages (JSON)."""
    from security.audit import record
    from security.errors import SecurityError
    from security.keyfiles import ensure_secret
    from security.paths import data_key_path, pseudonym_key_path

    out = []
    try:
        for name, path in (("pseudonym", pseudonym_key_path()), ("data", data_key_path())):
            existed = path.exists()
            ensure_secret(path)
            out.append(_key_report(name, path, name, existed))
    except SecurityError as exc:
        _fail(EXIT_USAGE, str(exc))
        return
    made = [k for k in out if k["created_now"]]
    if made:
        record("data.keys", role="operator", target=",".join(k["name"] for k in made),
               details={k["name"]: k["key_id"] for k in made})
    typer.echo(json.dumps({"keys": out}))
