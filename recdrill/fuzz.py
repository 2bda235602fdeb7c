"""``python -m recdrill.fuzz``: the fuzzers the test suite runs bounded (tests/fuzz), run as
long as asked, with a JSON summary of the cases each ran and what they found.

Targets: ``http`` (schemathesis against a replica serving ``--artifact``, admin routes with
a token), ``grpc`` (raw and extreme messages to the same replica), ``scenario`` (the drill
scenario parser) and ``manifest`` (manifest.json and artifact verification). After the
replica targets the replica must still be alive and ready and the artifact unchanged.

It lives at the top of the layers, not in bench/: the scenario fuzzer is drills', which
bench may not import. Needs the dev extra (hypothesis, schemathesis). Machine output (JSON)
goes to stdout and ``OUT/fuzz.json``, progress to stderr. Exit codes: 0 nothing found,
2 bad configuration, 4 a fuzzer found something.

Example:
    $ python -m recdrill.fuzz --examples 500 --out runs/fuzz --artifact runs/demo/artifacts
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from durable.options import ARTIFACT, PUBLIC_KEY, VERSION

__all__ = ["EXIT_CONFIG", "EXIT_FOUND", "EXIT_OK", "TARGETS", "FuzzConfig", "app", "main", "run"]

EXIT_OK, EXIT_CONFIG, EXIT_FOUND = 0, 2, 4
TARGETS = ("http", "grpc", "scenario", "manifest")
_E = "RECDRILL_FUZZ_"
_TARGET_HELP = f"Targets to run (repeat): {', '.join(TARGETS)}."


@dataclass(frozen=True)
class FuzzConfig:
    """One run: how many examples (HTTP: per operation and phase), which targets, and the
    artifact the replica targets serve (a version directory or a directory of versions)."""

    examples: int
    out: Path
    targets: tuple[str, ...] = TARGETS
    artifact: Path | None = None
    public_key: Path | None = None
    version: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown:
            raise ValueError(f"--target: {unknown} unknown; expected some of {list(TARGETS)}")
        if self.examples < 1:
            raise ValueError(f"--examples: expected at least 1, found {self.examples}")
        if {"http", "grpc"} & set(self.targets) and (self.artifact is None
                                                     or self.public_key is None):
            raise ValueError("http and grpc fuzz a replica: give --artifact and --public-key "
                             "(e.g. runs/demo/artifacts), or only --target scenario --target "
                             "manifest")

    def serving_version(self) -> str | None:
        """The version the replica serves: ``version``; else None for a version directory,
        or the last version (by name) of a directory of versions."""
        artifact = self.artifact
        if self.version is not None or artifact is None or (artifact / "manifest.json").is_file():
            return self.version
        versions = sorted(p.parent.name for p in artifact.glob("*/manifest.json"))
        if not versions:
            raise ValueError(f"--artifact {artifact}: expected an artifact or a directory of "
                             "versions, found no manifest.json")
        return versions[-1]


def run(config: FuzzConfig) -> dict[str, Any]:
    """Run the configured fuzzers; the summary (also written to ``out/fuzz.json``)."""
    from security.fuzzing import FuzzResult

    started = time.perf_counter()
    results: list[FuzzResult] = []
    if {"http", "grpc"} & set(config.targets):
        results += _replica_targets(config)
    if "scenario" in config.targets:
        from drills.fuzzing import fuzz_scenarios

        results.append(_logged(fuzz_scenarios(examples=config.examples, seed=config.seed)))
    if "manifest" in config.targets:
        from export.fuzzing import fuzz_manifest

        results.append(_logged(fuzz_manifest(examples=config.examples, seed=config.seed)))
    summary = {"examples": config.examples, "seconds": round(time.perf_counter() - started, 1),
               "total_cases": sum(r.total for r in results),
               "failures": sum(len(r.failures) for r in results),
               "targets": [r.as_dict() for r in results]}
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "fuzz.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _logged(result: Any) -> Any:
    typer.echo(result.summary_line(), err=True)
    return result


def _replica_targets(config: FuzzConfig) -> list[Any]:
    """Serve the artifact on loopback, fuzz HTTP and gRPC, then check the replica held."""
    from export.fuzzing import tree_digest
    from security.fuzzing import FuzzFailure, FuzzResult
    from serving.app import AppConfig
    from serving.fuzzing import fuzz_grpc, fuzz_http, known_ids
    from serving.server import EntryServer
    from serving.service import RecommendService
    from serving.source import DirectorySource
    from serving.testing import http_status

    assert config.artifact is not None and config.public_key is not None
    before = tree_digest(config.artifact)
    service = RecommendService(DirectorySource(str(config.artifact), str(config.public_key)),
                               replica="fuzz", node="local")
    service.load(config.serving_version())
    admin = secrets.token_urlsafe(16)
    server = EntryServer(service, AppConfig(admin_token=admin,
                                            audit_log=str(config.out / "audit.log")),
                         "127.0.0.1", 0, 0)
    endpoint = server.start()
    results: list[FuzzResult] = []
    problems: list[str] = []
    try:
        if "grpc" in config.targets:
            results.append(_logged(fuzz_grpc(endpoint.grpc_target, examples=config.examples,
                                             ids=known_ids(service.runner), seed=config.seed)))
        if "http" in config.targets:
            results.append(_logged(fuzz_http(endpoint.http_url, examples=config.examples,
                                             seed=config.seed, ids=known_ids(service.runner),
                                             headers={"Authorization": f"Bearer {admin}"})))
        try:
            server.ping()
        except (RuntimeError, TimeoutError) as exc:
            problems.append(f"the serving loop stopped answering: {exc}")
        if http_status(endpoint.http_url + "/readyz", timeout_s=5.0) != 200:
            problems.append("/readyz is not 200 after fuzzing")
    finally:
        server.stop()
    if tree_digest(config.artifact) != before:
        problems.append(f"{config.artifact} changed while the replica was fuzzed")
    results.append(FuzzResult("replica", {"post-checks": 1}, {"held": int(not problems)},
                              tuple(FuzzFailure("replica", "survives", p, "") for p in problems)))
    return results


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


def _seed(text: str | None) -> int | None:
    """``--seed``: an integer, or None for a fresh one (absent or ``random``)."""
    if text is None or text.strip().lower() in ("", "random"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--seed: expected an integer or 'random', found {text!r}") from None


@app.command()
def fuzz(
    examples: int = typer.Option(200, envvar=_E + "EXAMPLES",
                                 help="Examples per target (HTTP: per operation and phase)."),
    out: Path = typer.Option(Path("runs/fuzz"), envvar=_E + "OUT",
                             help="Directory for fuzz.json (and the replica's audit.log)."),
    target: list[str] = typer.Option(list(TARGETS), envvar=_E + "TARGET",
                                     help=_TARGET_HELP),
    artifact: Annotated[Path | None, ARTIFACT] = None,
    public_key: Annotated[Path | None, PUBLIC_KEY] = None,
    version: Annotated[str | None, VERSION] = None,
    seed: str | None = typer.Option(None, envvar=_E + "SEED", help=(
        "Replay a run: the seed its summary reported (default or 'random': a fresh one).")),
) -> None:
    """Run the fuzzers; prints the summary JSON."""
    if public_key is None and artifact is not None:
        from export.keys import public_key_path

        public_key = public_key_path()
    from serving.errors import ModelLoadError

    try:
        config = FuzzConfig(examples, out, tuple(target), artifact, public_key, version,
                            _seed(seed))
        config.serving_version()
    except ValueError as exc:
        typer.echo(f"fuzz: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    try:
        summary = run(config)
    except ModelLoadError as exc:
        typer.echo(f"fuzz: the replica cannot serve {artifact}: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    typer.echo(json.dumps(summary))
    if summary["failures"]:
        raise typer.Exit(EXIT_FOUND)


def main() -> None:
    """Console entry point (``python -m recdrill.fuzz``)."""
    app(prog_name="recdrill-fuzz")


if __name__ == "__main__":
    main()
