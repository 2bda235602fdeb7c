"""Demo steps after export: publish to hot standbys on a local multi-node Ray cluster (W=2),
serve the committed version from the nodes' own stores, and score the served answers.

The served answers are scored against each test user's held-out item, so the table's offline
NDCG@10 and what clients actually get can be compared side by side; when the artifact carries
search, every held-out test query is searched over the wire and scored the same way.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from replication.cluster import ClusterConfig, ReplicationCluster
from replication.keys import KeySpec, generate_key_file
from replication.localcluster import local_ray_cluster
from security.audit import AuditLog
from serving.client import Client
from serving.config import ServeSettings
from serving.server import free_port_base
from training.metrics import summarize

CONCURRENCY = 16


def _store_key(key_dir: Path) -> Path:
    key = key_dir / "store.key"
    if not key.exists():
        generate_key_file(key)
    return key


async def _score_served(client: Client, user_ids: list[str], targets: dict[str, int],
                        index_of: dict[str, int], exclude_seen: bool) -> dict[str, Any]:
    gate = asyncio.Semaphore(CONCURRENCY)
    ranks, degraded, replicas = [], 0, set()

    async def one(uid: str) -> None:
        nonlocal degraded
        async with gate:
            answer = await client.recommend({"user_id": uid, "k": 10,
                                             "exclude_seen": exclude_seen})
        ids = [index_of[item.item_id] for item in answer.items]
        ranks.append(ids.index(targets[uid]) if targets[uid] in ids else 10)
        degraded += answer.degraded
        replicas.add(f"{answer.node[:8]}/{answer.replica}")

    started = time.perf_counter()
    await asyncio.gather(*(one(uid) for uid in user_ids))
    metrics = summarize(np.array(ranks), k=10)
    return {"users": len(user_ids), "hr@10": round(metrics.hr, 4), "ndcg@10": round(metrics.ndcg, 4),
            "degraded": degraded, "answered_by": sorted(replicas),
            "seconds": round(time.perf_counter() - started, 2)}


async def _score_search(addrs: list[str], transport: str, queries: list[Any]
                        ) -> dict[str, Any]:
    """Every held-out test query over the wire: Recall@10 / NDCG@10 of what clients get."""
    from retrieval.metrics import ndcg_at_k, recall_at_k

    gate = asyncio.Semaphore(CONCURRENCY)
    ranked: list[list[str]] = [[] for _ in queries]
    degraded = 0

    async def one(row: int, client: Client) -> None:
        nonlocal degraded
        async with gate:
            answer = await client.search_raw({"query": queries[row].query, "k": 10})
        ranked[row] = [item["item_id"] for item in answer["items"]]
        degraded += bool(answer["degraded"])

    started = time.perf_counter()
    async with Client(addrs, transport=transport) as client:
        await asyncio.gather(*(one(row, client) for row in range(len(queries))))
    relevant = [set(q.relevant) for q in queries]
    return {"queries": len(queries), "recall@10": round(recall_at_k(ranked, relevant), 4),
            "ndcg@10": round(ndcg_at_k(ranked, relevant), 4), "degraded": degraded,
            "seconds": round(time.perf_counter() - started, 2)}


async def _score_transport(addrs: list[str], transport: str, targets: dict[str, int],
                           index_of: dict[str, int]) -> dict[str, Any]:
    users = sorted(targets)
    async with Client(addrs, transport=transport) as client:
        return {"unfiltered": await _score_served(client, users, targets, index_of, False),
                "seen_filtered": await _score_served(client, users, targets, index_of, True)}


def publish_and_serve(artifact: Path, public_key: Path, key_dir: Path, out: Path,
                      targets: dict[str, int]) -> dict[str, Any]:
    """Publish ``artifact`` with W=2 on head + 2 workers, serve it, score served answers."""
    import pandas as pd
    from ray import serve

    from serving.deployment import deploy

    node_root = out / "stores" / "nodes"
    # Replicas find their node's store through this variable (inherited by the Ray nodes).
    os.environ["RECDRILL_NODE_STORE_ROOT"] = str(node_root)
    key = _store_key(key_dir)
    items = pd.read_parquet(artifact / "items.parquet", columns=["item_id", "index"])
    index_of = dict(zip(items["item_id"], items["index"].astype(int)))
    report: dict[str, Any] = {}
    with local_ray_cluster(workers=2, object_store_mb=80):
        cluster = ReplicationCluster(ClusterConfig(
            primary_url=str(out / "stores" / "primary"), node_root=str(node_root),
            public_key_path=str(public_key), audit_path=str(out / "stores" / "audit.jsonl"),
            key_spec=KeySpec(files=(str(key),)), w=2))
        started = time.perf_counter()
        published = cluster.publish(str(artifact))
        report["publish"] = {"seconds": round(time.perf_counter() - started, 2), **published}
        base = free_port_base(2)
        settings = ServeSettings(store="node", public_key=str(public_key), key_files=(str(key),),
                                 replicas=2, http_port=base, grpc_port=base + 40, app_name="demo")
        try:
            started = time.perf_counter()
            endpoints = deploy(settings, timeout_s=180)
            report["serve"] = {"seconds": round(time.perf_counter() - started, 2),
                               "http": [e.http_url for e in endpoints],
                               "grpc": [e.grpc_target for e in endpoints]}
            for transport in ("http", "grpc"):
                report[f"served_{transport}"] = asyncio.run(
                    _score_transport(report["serve"][transport], transport, targets, index_of))
            if (artifact / "search").is_dir():
                from bench.loadgen.workload import load_search_queries

                queries = list(load_search_queries(artifact))
                for transport in ("http", "grpc"):
                    report[f"served_search_{transport}"] = asyncio.run(
                        _score_search(report["serve"][transport], transport, queries))
        finally:
            serve.shutdown()
    report["audit_head"] = AuditLog(out / "stores" / "audit.jsonl").verify()
    return report
