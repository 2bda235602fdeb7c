"""``python -m replication``: JSON on stdout, logs on stderr, named exit codes.

Every flag falls back to an environment variable (shown in ``--help``).

Example:
    $ python -m replication publish artifacts/v7 --store s3://bucket/recdrill --w 2
    $ python -m replication rollback            # to refs/previous
    $ python -m replication audit verify
"""

from __future__ import annotations

import enum
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from durable.options import PUBLIC_KEY, RAY_ADDRESS, STORE, STORE_KEY, VERSION
from replication.errors import (
    AuditChainBroken,
    ConfigError,
    IntegrityError,
    KeyMissingError,
    NoPrimaryCandidate,
    QuorumNotReached,
    ReplicationError,
    StoreUnavailable,
    VersionError,
)
from security import errors as security_errors
from security.paths import audit_log_path

__all__ = ["ExitCode", "app", "main"]

log = logging.getLogger("replication")


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INTEGRITY = 3
    QUORUM_NOT_REACHED = 4
    UNAVAILABLE = 5
    AUDIT_BROKEN = 6
    VERSION = 7


_EXIT_FOR: list[tuple[type[Exception], ExitCode]] = [
    (ConfigError, ExitCode.USAGE),
    (IntegrityError, ExitCode.INTEGRITY),
    (KeyMissingError, ExitCode.INTEGRITY),
    (QuorumNotReached, ExitCode.QUORUM_NOT_REACHED),
    (StoreUnavailable, ExitCode.UNAVAILABLE),
    (NoPrimaryCandidate, ExitCode.UNAVAILABLE),
    (security_errors.AuditChainBroken, ExitCode.AUDIT_BROKEN),  # replication's one too
    (VersionError, ExitCode.VERSION),
]

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Replicated model stores on Ray."
)
audit_app = typer.Typer(no_args_is_help=True, help="Audit log commands.")
app.add_typer(audit_app, name="audit")

Store = Annotated[str, STORE]
NodeRoot = Annotated[
    str,
    typer.Option(
        "--node-root",
        envvar="RECDRILL_NODE_STORE_ROOT",
        help="Directory holding each node's local store (node-<id>/store).",
    ),
]
PublicKey = Annotated[Path, PUBLIC_KEY]
KeyFiles = Annotated[list[Path] | None, STORE_KEY]
Audit = Annotated[
    Path,
    typer.Option(
        "--audit",
        envvar="RECDRILL_AUDIT_LOG",
        default_factory=audit_log_path,
        show_default="<state dir>/audit.jsonl",
        help="The audit log (JSONL), shared with every recdrill command.",
    ),
]
W = Annotated[
    int, typer.Option("--w", envvar="RECDRILL_W", help="Verified copies needed to commit.")
]
Address = Annotated[str, RAY_ADDRESS]
Version = Annotated[str | None, VERSION]


def _emit(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def _cluster(
    store: str,
    node_root: str,
    public_key: Path,
    key_files: list[Path] | None,
    audit: Path,
    w: int,
    address: str,
) -> Any:
    import ray

    from replication.cluster import ClusterConfig, ReplicationCluster
    from replication.keys import KeySpec

    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    config = ClusterConfig(
        primary_url=store,
        node_root=node_root,
        public_key_path=str(public_key),
        audit_path=str(audit),
        key_spec=KeySpec(files=tuple(str(p) for p in key_files or ())),
        w=w,
    )
    return ReplicationCluster(config)


@app.command()
def publish(
    directory: Path,
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    w: W = 2,
    address: Address = "auto",
) -> None:
    """Upload a signed artifact directory, replicate to W verified copies, commit."""
    _emit(
        _cluster(store, node_root, public_key, key_file, audit, w, address).publish(directory, w=w)
    )


@app.command()
def promote(
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    node: Annotated[str | None, typer.Option(help="Node to promote.")] = None,
    address: Address = "auto",
) -> None:
    """Make a standby the primary (default: the one holding the newest committed version)."""
    primary = _cluster(store, node_root, public_key, key_file, audit, 2, address).promote(node)
    _emit({"primary": primary.name})


@app.command()
def rollback(
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    version: Version = None,
    key_file: KeyFiles = None,
    address: Address = "auto",
) -> None:
    """Point refs/current at --version (default: refs/previous) on every node."""
    _emit(_cluster(store, node_root, public_key, key_file, audit, 2, address).rollback(version))


@app.command("list")
def list_(
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    address: Address = "auto",
) -> None:
    """Committed versions, refs, and which nodes hold each."""
    _emit(_cluster(store, node_root, public_key, key_file, audit, 2, address).list_versions())


@app.command()
def status(
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    address: Address = "auto",
) -> None:
    """Per node: versions held, current, lag, last verification; dead nodes."""
    _emit(_cluster(store, node_root, public_key, key_file, audit, 2, address).status())


@app.command()
def backup(
    url: str,
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    address: Address = "auto",
) -> None:
    """Copy every committed version to a separate store, verified."""
    _emit(_cluster(store, node_root, public_key, key_file, audit, 2, address).backup(url))


@app.command()
def restore(
    url: str,
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    address: Address = "auto",
) -> None:
    """Rebuild the primary store from a backup and let every node catch up."""
    _emit(_cluster(store, node_root, public_key, key_file, audit, 2, address).restore(url))


@app.command()
def repair(
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    address: Address = "auto",
) -> None:
    """Anti-entropy: refetch missing or corrupt blobs from healthy peers; re-verify."""
    report = _cluster(store, node_root, public_key, key_file, audit, 2, address).repair()
    _emit(report)
    if report["unrepairable"] or report["failed"]:
        raise typer.Exit(ExitCode.INTEGRITY)


@app.command()
def gc(
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    grace_s: Annotated[
        float, typer.Option(help="Keep uncommitted versions younger than this.")
    ] = 3600.0,
    address: Address = "auto",
) -> None:
    """Remove unreferenced blobs and stale uncommitted versions; never a committed one."""
    _emit(_cluster(store, node_root, public_key, key_file, audit, 2, address).gc(grace_s=grace_s))


@app.command("rotate-key")
def rotate_key(
    new_store_key: Annotated[Path, typer.Option(help="The new active store key file.")],
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    address: Address = "auto",
) -> None:
    """Re-encrypt every blob with NEW while serving continues (old keys still decrypt)."""
    from replication.keys import KeySpec

    spec = KeySpec(files=(str(new_store_key), *(str(p) for p in key_file or ())))
    _emit(_cluster(store, node_root, public_key, key_file, audit, 2, address).rotate_key(spec))


@app.command()
def watch(
    store: Store,
    node_root: NodeRoot,
    public_key: PublicKey,
    audit: Audit,
    key_file: KeyFiles = None,
    interval_s: float = 10.0,
    rounds: Annotated[int | None, typer.Option(help="Stop after N rounds.")] = None,
    address: Address = "auto",
) -> None:
    """Keep discovering nodes and letting them catch up."""
    _cluster(store, node_root, public_key, key_file, audit, 2, address).watch(
        interval_s=interval_s, rounds=rounds
    )


@app.command()
def keygen(path: Path) -> None:
    """Write a new AES-256 store key file (mode 0600); prints its key id."""
    from replication.keys import generate_key_file

    _emit({"path": str(path), "key_id": generate_key_file(path)})


@app.command()
def checkout(
    store: Store,
    public_key: PublicKey,
    key_file: KeyFiles = None,
    version: Version = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where checkouts go.")] = None,
) -> None:
    """Materialise --version (default: current) of a store (e.g. a node-local one) as a
    verified artifact directory; no Ray needed."""
    from replication.checkout import checkout as do_checkout
    from replication.keys import KeySpec

    spec = KeySpec(files=tuple(str(p) for p in key_file or ()))
    got, path = do_checkout(
        store, version, public_key_path=public_key, key_provider=spec, cache_dir=cache_dir
    )
    _emit({"version": got, "path": str(path)})


@audit_app.command("verify")
def audit_verify(
    audit: Audit,
    expect_head: Annotated[
        str | None, typer.Option(help="Known head hash (detects tail truncation).")
    ] = None,
) -> None:
    """Check the audit log (as `recdrill audit verify` does, every problem on stderr); exit 6
    on any edited, dropped, reordered or truncated entry or a forged anchor."""
    from security.audit_cli import run_verify

    report = run_verify(audit, expect_head)
    if not report.ok:
        raise AuditChainBroken(report.summary(), line=report.errors[0].line)
    _emit(report.to_dict())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map ReplicationError subclasses to named exit codes."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        app(args=argv, standalone_mode=False)
    except (ReplicationError, security_errors.SecurityError) as exc:
        code = next((c for t, c in _EXIT_FOR if isinstance(exc, t)), ExitCode.FAILED)
        log.error("%s: %s", type(exc).__name__, exc)
        _emit({"ok": False, "error": type(exc).__name__, "message": str(exc), "exit": code.name})
        return int(code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return int(ExitCode.FAILED)
    except typer.TyperException as exc:  # usage errors (typer's vendored click)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        return int(ExitCode.USAGE)
    return int(ExitCode.OK)
