"""User-written serving configuration (CLI flags / env): pydantic, one description per field.

Example:
    >>> ServeSettings(artifact="/tmp/sample-artifact", public_key="/tmp/sample-artifact.pub").replicas
    2
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.admission import AdmissionPolicy
from serving.app import AppConfig
from serving.service import ServiceConfig

__all__ = ["ServeSettings"]


class ServeSettings(BaseModel):
    """How `recdrill serve` runs the recommender on Ray Serve."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    artifact: str | None = Field(None, description="A verified artifact directory to serve.")
    store: str | None = Field(None, description="Replication store URL/path, or 'node' for "
                              "each Ray node's local store; replicas check out and verify.")
    public_key: str = Field(..., description="Artifact signing public key (PEM).")
    key_files: tuple[str, ...] = Field((), description="Store encryption key files.")
    node_root: str | None = Field(None, description="With store='node': the directory holding "
                                  "every node's store (default $RECDRILL_NODE_STORE_ROOT).")
    version: str | None = Field(None, description="Version to serve; None = current.")
    app_name: str = Field("recdrill", description="Ray Serve application name.")
    host: str = Field("127.0.0.1", description="Interface the replicas' servers bind.")
    http_port: int = Field(8100, ge=1, le=65000, description="HTTP port of replica rank 0; "
                           "rank r binds http_port + r.")
    grpc_port: int = Field(9100, ge=1, le=65000, description="gRPC port of replica rank 0; "
                           "rank r binds grpc_port + r.")
    proxy_port: int | None = Field(None, description="Also open Serve's standard HTTP proxy on "
                                   "this port (head node; slower path, for comparison).")
    replicas: int = Field(2, ge=1, le=64, description="Model replicas, at most one per node.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs per replica (onnxruntime threads).")
    deadline_s: float = Field(1.0, gt=0, description="Server-side deadline per request.")
    batching: bool = Field(True, description="Dynamic batching on (@serve.batch).")
    max_batch_size: int = Field(16, ge=1, le=256, description="Largest model batch.")
    batch_wait_s: float = Field(0.0, ge=0, le=0.1, description="Wait for company per batch.")
    max_in_flight: int = Field(48, ge=1, description="Admitted requests per replica.")
    max_degraded: int = Field(64, ge=0, description="Beyond max_in_flight, answered from the "
                              "fallback tier; beyond that, shed with 503.")
    api_token: str | None = Field(None, description="Token for recommend routes (None: open).")
    admin_token: str | None = Field(None, description="Token for admin routes (None: off).")

    @model_validator(mode="after")
    def _one_source(self) -> ServeSettings:
        if (self.artifact is None) == (self.store is None):
            raise ValueError("give exactly one of artifact or store")
        return self

    def service_config(self, threads: int | None = None) -> ServiceConfig:
        return ServiceConfig(deadline_s=self.deadline_s, max_batch_size=self.max_batch_size,
                             batch_wait_s=self.batch_wait_s, batching=self.batching,
                             threads=threads,
                             admission=AdmissionPolicy(self.max_in_flight, self.max_degraded))

    def app_config(self) -> AppConfig:
        return AppConfig(api_token=self.api_token, admin_token=self.admin_token)
