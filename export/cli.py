"""``python -m export``: package a checkpoint into a signed artifact, or verify one.

``verify`` fails closed: exit code 1 and the offending file named on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from durable.options import PUBLIC_KEY
from export.errors import ArtifactVerificationError, ExportError
from export.keys import ensure_signing_key, public_key_path
from export.verify import verify_artifact

EXIT_OK, EXIT_INVALID, EXIT_ERROR = 0, 1, 2

app = typer.Typer(add_completion=False, help="Export and verify recdrill artifacts.")


@app.command()
def build(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory from `python -m training train`."),
    out: Path = typer.Option(..., help="Artifact directory to create (must not exist)."),
    version: str = typer.Option(None, envvar="RECDRILL_VERSION",
                                help="Name of the new version; default: UTC time + graph digest."),
    parent: str = typer.Option(None, help="Parent version, recorded in the manifest."),
    quantize: bool = typer.Option(True, help="Try per-channel int8 (kept only if it holds quality)."),
    search: Path = typer.Option(None, envvar="RECDRILL_SEARCH_CHECKPOINT",
                                help="Search checkpoint directory: ship the query encoder and "
                                     "item embeddings in the artifact too."),
    pseudonym_key: Path = typer.Option(
        None, envvar="RECDRILL_PSEUDONYM_KEY",
        help="HMAC key file the artifact's user ids are pseudonymised with (must exist; "
             "default: <key dir>/pseudonym.key, generated on first use). Serving needs the "
             "same key."),
) -> None:
    """Export to ONNX, check parity, sign and verify; prints the result as JSON."""
    from export.package import load_pseudonymiser, package_recommender
    from training.checkpoint import load_checkpoint

    private, public = ensure_signing_key()
    try:
        result = package_recommender(load_checkpoint(checkpoint), out, private, public,
                                     version=version, parent=parent, quantize=quantize,
                                     search=search,
                                     pseudonymiser=load_pseudonymiser(pseudonym_key))
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from exc
    report: dict[str, object] = {"artifact": str(result.path), "version": result.version,
                                 "pseudonym_key_id": result.pseudonym_key_id,
                                 "parity": result.parity.as_dict(),
                                 "int8_top10_overlap": result.int8_overlap,
                                 "fused_ops": result.fused_ops}
    if result.search is not None:
        report["search"] = {"parity": result.search.parity.as_dict(),
                            "int8_top10_overlap": result.search.int8_overlap,
                            "fused_ops": result.search.fused_ops,
                            "metrics": result.search.metrics,
                            "seconds": round(result.search.seconds, 1)}
    typer.echo(json.dumps(report))


@app.command()
def verify(
    artifact: Path = typer.Argument(..., help="Artifact directory."),
    public_key: Annotated[Path | None, PUBLIC_KEY] = None,
) -> None:
    """Check every file's digest and the signature; exit 1 naming the file on any mismatch."""
    try:
        manifest = verify_artifact(artifact, public_key or public_key_path())
    except ArtifactVerificationError as exc:
        typer.echo(json.dumps({"ok": False, "file": exc.path, "reason": exc.reason,
                               "error": str(exc)}))
        typer.echo(f"REFUSED {exc.path}: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from exc
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from exc
    typer.echo(json.dumps({"ok": True, "version": manifest.version,
                           "files": len(manifest.files)}))


def main() -> None:
    """Console entry point."""
    app(prog_name="python -m export")


if __name__ == "__main__":
    main()
