"""An embedded multi-node Ray cluster on one machine (head + workers), for tests, benches and
drills: its own temp dir, ports and small object stores, and a teardown that stops only it.
With ``redis_address`` the GCS keeps its state in that Redis (GCS fault tolerance), so the
head can be killed and restarted (``kill_head`` / ``restart_head``) while workers live on.

Example:
    >>> with local_ray_cluster(workers=3) as lc:  # doctest: +SKIP
    ...     ray.get(...)
    ...     lc.kill_node(lc.workers[0])
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replication.testing import free_port, kill_node, kill_pids
from security.ray_auth import ensure_token_auth

__all__ = ["LocalRayCluster", "local_ray_cluster"]

MB = 1024 * 1024


@dataclass
class LocalRayCluster:
    """Handles to a running embedded cluster."""

    root: Path
    cluster: Any
    workers: list[Any] = field(default_factory=list)
    head_args: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_worker(self, object_store_mb: int = 80) -> Any:
        node = self.cluster.add_node(num_cpus=1, object_store_memory=object_store_mb * MB)
        self.workers.append(node)
        return node

    def kill_node(self, worker: Any, *, raylet_only: bool = False) -> list[int]:
        """SIGKILL a worker node's raylet and every process it started (a machine lost), or
        with ``raylet_only`` just the raylet (its workers follow, eventually); returns the
        pids signalled."""
        return kill_node(worker.node_id, raylet_only=raylet_only)

    def head_pids(self) -> list[int]:
        """Every process of the head node: GCS server, raylet and what they started."""
        import psutil

        pids = [info.process.pid for infos in self.cluster.head_node.all_processes.values()
                for info in infos]
        for pid in list(pids):
            try:
                pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return sorted(set(pids))

    def kill_head(self) -> list[int]:
        """SIGKILL every process of the head node at once; returns their pids."""
        pids = self.head_pids()
        kill_pids(pids)
        return pids

    def restart_head(self) -> Any:
        """Start a new head on the same GCS port (a fresh temp dir: on one machine the old
        one still names the surviving workers). Only meaningful with GCS fault tolerance."""
        self.restarts += 1
        temp = self.root / f"ray-head-{self.restarts}"
        temp.mkdir()
        self.cluster.head_node = None
        # Without exit hooks the node can start from any thread (the hooks install signal
        # handlers, main thread only); the teardown stops it explicitly anyway.
        saved, self.cluster._shutdown_at_exit = self.cluster._shutdown_at_exit, False
        try:
            return self.cluster.add_node(**{**self.head_args, "temp_dir": str(temp)})
        finally:
            self.cluster._shutdown_at_exit = saved


@contextlib.contextmanager
def local_ray_cluster(
    workers: int = 3, *, object_store_mb: int = 80, fast_failure_detection: bool = True,
    head_cpus: int = 1, redis_address: str | None = None,
) -> Iterator[LocalRayCluster]:
    """Start head + ``workers`` nodes (1 CPU each, no dashboard), ``ray.init`` to it, and always
    shut both down. Sets RAY_TMPDIR (so the shared /tmp/ray is untouched) and PYTHONPATH (so
    workers import this checkout) for the duration; with ``redis_address``, also
    RAY_REDIS_ADDRESS and a namespace of its own (GCS fault tolerance)."""
    import ray
    from ray.cluster_utils import Cluster

    repo = Path(__file__).resolve().parents[1]
    root = Path(tempfile.mkdtemp(prefix="rdrep-", dir="/tmp"))  # short: unix socket paths
    (root / "ray").mkdir()
    names = ("RAY_TMPDIR", "PYTHONPATH", "RAY_REDIS_ADDRESS", "RAY_external_storage_namespace")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["RAY_TMPDIR"] = str(root)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), saved["PYTHONPATH"]) if p)
    if redis_address is not None:
        os.environ["RAY_REDIS_ADDRESS"] = redis_address
        os.environ["RAY_external_storage_namespace"] = root.name
    system_config = (
        {
            "health_check_period_ms": 500,
            "health_check_timeout_ms": 500,
            "health_check_failure_threshold": 4,
        }
        if fast_failure_detection
        else {}
    )
    cluster = None
    head_args = {
        "num_cpus": head_cpus,
        "object_store_memory": object_store_mb * MB,
        "include_dashboard": False,
        "temp_dir": str(root / "ray"),
        "gcs_server_port": free_port(),
        "_system_config": system_config,
    }
    try:
        ensure_token_auth()  # a cluster recdrill starts keeps Ray's token authentication on
        cluster = Cluster(initialize_head=True, head_node_args=head_args)
        lc = LocalRayCluster(root, cluster, head_args=head_args)
        for _ in range(workers):
            lc.add_worker(object_store_mb)
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        yield lc
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)
