"""Replication on a real multi-node Ray cluster (head + 3 workers via ray.cluster_utils.Cluster).

The tests run in order and share one cluster and one set of stores: publish, node SIGKILLs
during and after a publish, a new node catching up, a flipped byte repaired from a peer, the
primary store deleted and a standby promoted, and finally the audit chain.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replication.checkout import node_name
from replication.cluster import ClusterConfig, ReplicationCluster
from replication.errors import ConfigError, IntegrityError, QuorumNotReached
from replication.keys import KeySpec, generate_key_file
from replication.localcluster import local_ray_cluster
from replication.testing import (
    SigningKeys,
    flip_byte,
    kill_node,
    make_artifact,
    make_keys,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

MB = 1024 * 1024


class Env:
    def __init__(self, root: Path, cluster: Any, workers: list[Any]) -> None:
        self.root = root
        self.cluster = cluster
        self.workers = workers
        self.keys: SigningKeys = make_keys(root / "signing")
        store_key = root / "secrets" / "store.key"
        generate_key_file(store_key)
        self.key_spec = KeySpec(files=(str(store_key),), env_var=None)
        self.config = ClusterConfig(
            primary_url=str(root / "primary"),
            node_root=str(root / "nodes"),
            public_key_path=str(self.keys.public),
            audit_path=str(root / "audit.jsonl"),
            key_spec=self.key_spec,
            w=2,
            actor="pytest@integration",
            call_timeout_s=90.0,
            detached=False,
        )
        self.rc = ReplicationCluster(self.config)
        self.killed: list[str] = []

    def artifact(self, version: str, model_bytes: int = 64 * 1024) -> Path:
        return make_artifact(self.root / "artifacts", version, self.keys, model_bytes=model_bytes)

    def kill_node(self, worker: Any, *, raylet_only: bool = False) -> str:
        """SIGKILL the node's raylet and, unless ``raylet_only``, every process it started: a
        whole-machine loss, its replicator included (which would otherwise finish the call it
        is serving)."""
        import ray

        name = node_name(worker.node_id)
        replicator = (None if raylet_only
                      else ray.get(self.rc.fleet.handles[name].pid.remote(), timeout=30))
        killed = kill_node(worker.node_id, raylet_only=raylet_only)
        assert replicator is None or replicator in killed, (replicator, killed)
        self.killed.append(name)
        return name

    def load_everywhere(self, cache_tag: str) -> dict[str, tuple[str, list[str]]]:
        """On every live node, in a task pinned there: checkout from that node's own store."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        def load_here(
            root: str, public_key: str, spec: KeySpec, cache: str
        ) -> tuple[str, str, list[str]]:
            from replication.checkout import checkout, node_store_path

            node_id = ray.get_runtime_context().get_node_id()
            version, path = checkout(
                node_store_path(root),
                public_key_path=public_key,
                key_provider=spec,
                cache_dir=f"{cache}/{node_id}",
            )
            return node_id, version, sorted(p.name for p in path.iterdir())

        task = ray.remote(num_cpus=0, max_retries=0)(load_here)
        refs = {
            node_name(n["NodeID"]): task.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(
                self.config.node_root,
                str(self.keys.public),
                self.key_spec,
                str(self.root / "readers" / cache_tag),
            )
            for n in ray.nodes()
            if n["Alive"]
        }
        out = {}
        for name, ref in refs.items():
            node_id, version, files = ray.get(ref, timeout=60)
            assert node_name(node_id) == name
            out[name] = (version, files)
        return out


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with local_ray_cluster(workers=3, object_store_mb=80) as lc:
        yield Env(lc.root, lc.cluster, lc.workers)


def test_publish_w2_commits_after_verified_copies_and_every_node_loads_it(env: Env) -> None:
    with pytest.raises(ConfigError, match="only 4 live"):
        env.rc.publish(env.artifact("v0"), w=5)  # can never reach W: refused before uploading
    result = env.rc.publish(env.artifact("v1"))
    assert result["seq"] == 1 and len(result["committed_on"]) == 4 and not result["failed"]
    loaded = env.load_everywhere("t1")
    assert len(loaded) == 4
    for version, files in loaded.values():
        assert version == "v1"
        assert files == [
            "fallback.npz",
            "items.parquet",
            "manifest.json",
            "model.onnx",
            "model.sig",
        ]
    assert set(env.rc.status()["nodes"]) == set(loaded)


def test_raylet_sigkill_during_and_after_publish_loses_no_committed_version(env: Env) -> None:
    art = env.artifact("v2", model_bytes=48 * MB)
    victim_store = Path(env.config.node_root) / node_name(env.workers[0].node_id) / "store"
    blobs_before = set(os.listdir(victim_store / "blobs" / "sha256"))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = env.rc.publish(art)
        except QuorumNotReached as exc:
            outcome["aborted"] = exc

    publisher = threading.Thread(target=run)
    publisher.start()
    # Kill as soon as the victim starts receiving v2 (a new blob or its temp file appears).
    wait_until(lambda: set(os.listdir(victim_store / "blobs" / "sha256")) - blobs_before,
               60, 0.01, what="the victim to start copying v2")
    victim = env.kill_node(env.workers[0])  # during the prepare phase
    publisher.join(timeout=120)
    assert not publisher.is_alive()
    wait_until(lambda: victim in env.rc.status()["nodes"]
               and not env.rc.status()["nodes"][victim]["alive"],
               30, 0.01, what="the dead node to be noticed")

    print("publish under SIGKILL:", outcome.get("result") or repr(outcome.get("aborted")))
    listing = env.rc.list_versions()
    committed = [v["version"] for v in listing["versions"]]
    live_status = {n: s for n, s in env.rc.status()["nodes"].items() if s["alive"]}
    if "result" in outcome:  # completed: committed with >= W verified copies on live nodes
        assert committed == ["v1", "v2"] and len(outcome["result"]["committed_on"]) >= 2
    else:  # cleanly absent: no record of v2 on any live store
        assert committed == ["v1"]
        assert all("v2" not in s["held"] for s in live_status.values())
    assert all(set(s["committed"]) == set(committed) for s in live_status.values())
    from replication.repo import VersionStore
    from replication.store import open_store

    dead_inv = VersionStore(open_store(victim_store), env.key_spec.load(), node=victim).inventory(
        deep=True
    )
    assert set(dead_inv.committed()) <= set(committed)  # the dead node never committed more
    assert all(dead_inv.complete(v) for v in dead_inv.committed())  # nor half of anything

    env.kill_node(env.workers[1], raylet_only=True)  # after a commit
    wait_until(lambda: len([n for n, s in env.rc.status()["nodes"].items() if s["alive"]]) == 2,
               30, 0.01, what="second dead node to be noticed")
    loaded = env.load_everywhere("t2")
    assert len(loaded) == 2 and {v for v, _ in loaded.values()} == {committed[-1]}

    newcomer = env.cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
    env.workers.append(newcomer)
    env.rc.catch_up()  # discovers the node, starts its replicator, which syncs itself
    fresh = env.rc.status()["nodes"][node_name(newcomer.node_id)]
    assert fresh["alive"] and set(fresh["committed"]) == set(committed) and fresh["lag"] == 0


def test_flipped_byte_on_one_node_is_rejected_and_repaired_from_a_peer(env: Env) -> None:
    import ray

    target = env.workers[2]
    store = Path(env.config.node_root) / node_name(target.node_id) / "store"
    current = env.rc.list_versions()["current"]
    from replication.repo import VersionStore
    from replication.store import open_store

    vs = VersionStore(open_store(store), env.key_spec.load(), node="reader")
    digest = next(f.sha256 for f in vs.get_record(current).files if f.path == "model.onnx")
    blob = store / "blobs" / "sha256" / digest
    flip_byte(blob, blob.stat().st_size // 2)

    with pytest.raises(ray.exceptions.RayTaskError) as info:
        env.load_everywhere("t3-corrupt")
    cause = info.value.cause
    assert isinstance(cause, IntegrityError)
    assert (
        (cause.version, cause.path) == (current, "model.onnx")
        and cause.node
        and "store" in cause.node
    )

    report = env.rc.repair()
    healed = [(h["node"], h["digest"]) for h in report["healed"]]
    assert (node_name(target.node_id), digest) in healed and not report["unrepairable"]
    assert all(v == "ok" for per in report["verified"].values() for v in per.values())
    assert {v for v, _ in env.load_everywhere("t3-healed").values()} == {current}


def test_primary_store_deleted_standby_promoted_and_next_publish_succeeds(env: Env) -> None:
    before = [v["version"] for v in env.rc.list_versions()["versions"]]
    shutil.rmtree(env.root / "primary")
    driver = ReplicationCluster(env.config)  # a fresh driver, as the CLI would be
    started = time.perf_counter()
    primary = driver.resolve_primary()
    promote_s = time.perf_counter() - started
    assert primary.kind == "node" and promote_s < 30
    result = driver.publish(env.artifact("v3"))
    assert result["primary"] == primary.name and len(result["committed_on"]) >= 2
    assert [v["version"] for v in driver.list_versions()["versions"]] == [*before, "v3"]
    assert {v for v, _ in env.load_everywhere("t4").values()} == {"v3"}

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "replication",
            "list",
            "--store",
            env.config.primary_url,
            "--node-root",
            env.config.node_root,
            "--public-key",
            env.config.public_key_path,
            "--audit",
            env.config.audit_path,
            "--store-key",
            env.key_spec.files[0],
            "--ray-address",
            env.cluster.address,
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_TMPDIR": str(env.root)},
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert '"current": "v3"' in cli.stdout and f'"primary": "{primary.name}"' in cli.stdout


def test_audit_chain_verifies_after_everything_and_fails_after_an_edit(env: Env) -> None:
    audit = Path(env.config.audit_path)
    actions = [
        line.split('"action": "')[1].split('"')[0] for line in audit.read_text().splitlines()
    ]
    assert {"init", "publish", "repair", "promote", "catch-up"} <= set(actions)

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "replication", "audit", "verify", "--audit", str(path)],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert verify(audit).returncode == 0
    edited = env.root / "edited.jsonl"
    edited.write_text(audit.read_text().replace('"action": "repair"', '"action": "publish"', 1))
    assert verify(edited).returncode == 6
