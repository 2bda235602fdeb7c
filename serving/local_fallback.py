"""The degraded tier in the caller's process, for when no replica can answer at all.

A replica answers from its fallback lists when its own model stalls; but with every replica
dead there is no process left to do it. ``serving.client.Client(fallback=...)`` then answers
from the same lists, loaded from a verified copy of the artifact, marked ``degraded: true``
and ``replica: "client-fallback"`` — an answer rather than an error.

Example:
    >>> tier = LocalFallback.from_artifact("runs/demo/artifacts/v1", "keys/signing.pub")  # doctest: +SKIP
    >>> Client(endpoints, fallback=tier)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import socket
from typing import Any

from export.verify import verify_artifact
from serving.catalog import Catalog
from serving.schemas import parse_request
from serving.users import UserPrivacy

__all__ = ["LocalFallback"]

REPLICA_NAME = "client-fallback"


class LocalFallback:
    """Answers recommend bodies from one version's popularity / co-visitation lists."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.node = socket.gethostname()

    @classmethod
    def from_artifact(cls, path: str | os.PathLike[str],
                      public_key_path: str | os.PathLike[str],
                      privacy: UserPrivacy | None = None) -> LocalFallback:
        """Verify the artifact (digests and signature) first; fails closed like a replica,
        pseudonym key and forget register included (``privacy``; default: default paths)."""
        return cls(Catalog.from_manifest(path, verify_artifact(path, public_key_path), privacy))

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The degraded answer; bad input raises ``InvalidRequest`` as a replica would."""
        ranked = self.catalog.fallback(self.catalog.resolve(parse_request(body)))
        return {"items": self.catalog.items_json(ranked), "model_version": self.catalog.version,
                "degraded": True, "replica": REPLICA_NAME, "node": self.node}
