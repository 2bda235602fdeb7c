"""User-written serving configuration (CLI flags / env): pydantic, one description per field.

Example:
    >>> ServeSettings(artifact="/tmp/sample-artifact", public_key="/tmp/sample-artifact.pub").replicas
    2
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from security.paths import forget_register_path, pseudonym_key_path
from serving.admission import AdmissionPolicy
from serving.app import AppConfig
from serving.search import DEFAULT_BLEND
from serving.service import ServiceConfig
from serving.users import UserPrivacy

__all__ = ["ServeSettings", "resolve_paths"]


class ServeSettings(BaseModel):
    """How `recdrill serve` runs the recommender on Ray Serve."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    artifact: str | None = Field(None, description="A verified artifact directory to serve.")
    store: str | None = Field(None, description="Replication store URL/path, or 'node' for "
                              "each Ray node's local store; replicas check out and verify.")
    public_key: str = Field(..., description="Artifact signing public key (PEM).")
    key_files: tuple[str, ...] = Field((), description="Store encryption key files.")
    pseudonym_key: str | None = Field(None, description="HMAC key file the artifacts' user "
                                      "ids are pseudonymised with (the one export used); "
                                      "None: <key dir>/pseudonym.key when it exists. A "
                                      "pseudonymised version is refused without it.")
    forget_register: str | None = Field(None, description="Forget-request register: users "
                                        "named there are answered as unknown (re-read within "
                                        "~1 s of a change); None: the default state path.")
    node_root: str | None = Field(None, description="With store='node': the directory holding "
                                  "every node's store (default $RECDRILL_NODE_STORE_ROOT).")
    version: str | None = Field(None, description="Version to serve; None = current.")
    app_name: str = Field("recdrill", description="Ray Serve application name.")
    host: str = Field("127.0.0.1", description="Interface the replicas' servers bind.")
    http_port: int = Field(8100, ge=1, le=65000, description="HTTP port of replica rank 0; "
                           "rank r binds http_port + r.")
    grpc_port: int = Field(9100, ge=1, le=65000, description="gRPC port of replica rank 0; "
                           "rank r binds grpc_port + r.")
    rank_ports: bool = Field(True, description="Replica rank r binds http_port + r and "
                             "grpc_port + r (several replicas per host); false: every replica "
                             "binds http_port and grpc_port (one replica per node or pod).")
    proxy_port: int | None = Field(None, description="Also open Serve's standard HTTP proxy on "
                                   "this port (head node; slower path, for comparison).")
    replicas: int = Field(2, ge=1, le=64, description="Model replicas, at most one per node.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs per replica (onnxruntime threads).")
    deadline_s: float = Field(1.0, gt=0, description="Server-side deadline per request.")
    search_blend: float = Field(DEFAULT_BLEND, ge=0, le=10, description="Search: weight of the "
                                "recommender's standardised score when a request names a "
                                "user or history (0: unpersonalised).")
    batching: bool = Field(True, description="Dynamic batching on (serving.batching).")
    max_batch_size: int = Field(16, ge=1, le=256, description="Largest model batch.")
    batch_wait_s: float = Field(0.0, ge=0, le=0.1, description="Wait for company per batch.")
    max_in_flight: int = Field(48, ge=1, description="Admitted requests per replica.")
    max_degraded: int = Field(64, ge=0, description="Beyond max_in_flight, answered from the "
                              "fallback tier; beyond that, shed with 503.")
    api_token: str | None = Field(None, description="Static token of role reader for the data "
                                  "routes (None and no tokens file: those routes are open).")
    admin_token: str | None = Field(None, description="Static token of role operator for the "
                                    "admin routes (None and no tokens file: admin is off).")
    tokens_file: str | None = Field(None, description="Token table (`recdrill token create`): "
                                    "every route but health and metrics then needs a token; "
                                    "re-read within a second of a change (revocations).")
    audit_log: str | None = Field(None, description="Audit chain for admin actions (None: "
                                  "$RECDRILL_AUDIT_LOG or ~/.local/state/recdrill/audit.jsonl).")
    tls_cert: str | None = Field(None, description="PEM certificate (leaf, then chain) the "
                                 "replicas and the front door serve HTTPS and gRPC over TLS "
                                 "with; None: plaintext. Needs tls_key.")
    tls_key: str | None = Field(None, description="Unencrypted PEM private key of tls_cert.")
    tls_ca: str | None = Field(None, description="PEM CA that signed tls_cert: what the front "
                               "door verifies the replicas against (None: the system's CAs).")

    @model_validator(mode="after")
    def _one_source(self) -> ServeSettings:
        if (self.artifact is None) == (self.store is None):
            raise ValueError("give exactly one of artifact or store")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> ServeSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(f"tls_cert and tls_key go together; found tls_cert={self.tls_cert!r}"
                             f", tls_key={self.tls_key!r}: give both, or neither for plaintext")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("tls_ca is set but tls_cert and tls_key are not: give them too "
                             "(tls_ca verifies the replicas' certificate)")
        return self

    def service_config(self, threads: int | None = None) -> ServiceConfig:
        return ServiceConfig(deadline_s=self.deadline_s, max_batch_size=self.max_batch_size,
                             batch_wait_s=self.batch_wait_s, batching=self.batching,
                             threads=threads, search_blend=self.search_blend,
                             admission=AdmissionPolicy(self.max_in_flight, self.max_degraded),
                             users=UserPrivacy(self.pseudonym_key, self.forget_register))

    def app_config(self) -> AppConfig:
        return AppConfig(api_token=self.api_token, admin_token=self.admin_token,
                         tokens_file=self.tokens_file, audit_log=self.audit_log)


def _is_url(value: str) -> bool:
    return "://" in value and not value.startswith("file://")


def resolve_paths(settings: ServeSettings) -> ServeSettings:
    """``settings`` with every local path made absolute and checked, before anything deploys.

    Replicas run in other processes and other directories, so a relative path would make every
    one of them fail (in a restart loop, the cause buried in logs). Raises ValueError naming
    the option, the path and what is wrong.

    Example:
        >>> resolve_paths(ServeSettings(artifact="nowhere", public_key="k.pub"))
        Traceback (most recent call last):
        ...
        ValueError: artifact: .../nowhere does not exist
    """
    def path(option: str, value: str, *, directory: bool = False) -> str:
        p = Path(os.path.expanduser(value.removeprefix("file://"))).resolve()
        if not p.exists():
            raise ValueError(f"{option}: {p} does not exist")
        if directory and not p.is_dir():
            raise ValueError(f"{option}: {p} is not a directory")
        if not directory and not p.is_file():
            raise ValueError(f"{option}: {p} is not a file")
        return str(p)

    update: dict[str, object] = {}
    if settings.artifact is not None:
        art = Path(path("artifact", settings.artifact, directory=True))
        if not (art / "manifest.json").is_file() and not any(art.glob("*/manifest.json")):
            raise ValueError(f"artifact: {art} holds no manifest.json (nor <version>/manifest.json)"
                             ": pass the directory `python -m export build` wrote")
        update["artifact"] = str(art)
    update["public_key"] = path("public_key", settings.public_key)
    if settings.tokens_file is not None:
        update["tokens_file"] = path("tokens_file", settings.tokens_file)
    if settings.audit_log is not None:
        update["audit_log"] = str(Path(os.path.expanduser(settings.audit_log)).resolve())
    update["key_files"] = tuple(path("key_files", k) for k in settings.key_files)
    # The defaults are resolved here, on the driver: replicas may not share its environment.
    if settings.pseudonym_key is not None:
        update["pseudonym_key"] = path("pseudonym_key", settings.pseudonym_key)
    elif (default_key := pseudonym_key_path()).is_file():
        update["pseudonym_key"] = str(default_key.resolve())
    register = settings.forget_register
    update["forget_register"] = str(Path(os.path.expanduser(register)).resolve() if register
                                    else forget_register_path().resolve())
    if settings.store not in (None, "node") and not _is_url(settings.store):
        update["store"] = path("store", settings.store, directory=True)
    if settings.node_root is not None:
        update["node_root"] = path("node_root", settings.node_root, directory=True)
    for option in ("tls_cert", "tls_key", "tls_ca"):
        value = getattr(settings, option)
        if value is not None:
            update[option] = path(option, value)
    return settings.model_copy(update=update)
