"""The driver's values: ``ClusterConfig`` (where things live, how many verified copies a commit
needs) and ``Primary`` (the store publishes go to, resolved at run time).

Both live here rather than in ``replication.cluster`` so that ``replication.maintenance`` can
name them without importing the cluster driver.

Example:
    >>> Primary("node", "node-a", "node-a").spec
    ('peer', 'replicator-node-a')
"""

from __future__ import annotations

from dataclasses import dataclass, field

from replication.keys import KeySpec
from replication.nodeops import SourceSpec
from replication.replicator import actor_name
from security.audit import default_actor

__all__ = ["ClusterConfig", "Primary"]


@dataclass(frozen=True)
class ClusterConfig:
    """Where things live and how many verified copies a commit needs."""

    primary_url: str
    node_root: str
    public_key_path: str
    audit_path: str
    key_spec: KeySpec = field(default_factory=KeySpec)
    w: int = 2
    actor: str = field(default_factory=default_actor)
    role: str = "operator"  # the role audit entries record for this driver's actions
    call_timeout_s: float = 300.0
    detached: bool = True


@dataclass(frozen=True)
class Primary:
    """The store publishes go to: the configured store, or a promoted standby node."""

    kind: str  # "store" | "node"
    name: str  # "primary" for the store, else the node name
    url: str

    @property
    def spec(self) -> SourceSpec:
        return ("store", self.url) if self.kind == "store" else ("peer", actor_name(self.name))
