"""Replication figures: time to replicate a large artifact to every node of an embedded Ray
cluster, time to promote a standby after primary loss, and the per-MB cost of encryption and
verification, each next to a baseline measured in the same run (a plain file copy).

Run:  python -m bench.replication_bench --size-mb 100 --nodes 3   (JSON on stdout)
Importing this module does no work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def _chunks(path: Path, size: int = 4 * MB):  # type: ignore[no-untyped-def]
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _make_artifact(root: Path, version: str, keys: Any, size_mb: int) -> Path:
    from replication.testing import make_artifact

    return make_artifact(root, version, keys, model_bytes=size_mb * MB)


def per_mb_costs(work: Path, art: Path, keys: Any, key_spec: Any) -> dict[str, Any]:
    """Seconds per MB of the single-threaded building blocks, and ratios to a plain copy."""
    from export.verify import verify_artifact
    from replication.checkout import materialise
    from replication.crypto import decrypt_chunks, encrypt_chunks
    from replication.repo import VersionStore
    from replication.store import open_store
    from replication.sync import upload_artifact

    model = art / "model.onnx"
    mb = model.stat().st_size / MB
    ring = key_spec.load()
    digest = hashlib.sha256(model.read_bytes()).hexdigest()

    def best(fn: Callable[[], Any], runs: int = 3) -> float:
        return min(_timed(fn)[0] for _ in range(runs))

    copy_s = best(lambda: shutil.copyfile(model, work / "copy.bin"))
    sha_s = best(lambda: hashlib.file_digest(model.open("rb"), "sha256"))
    sealed = list(encrypt_chunks(_chunks(model), ring, digest=digest))
    enc_s = best(lambda: sum(len(c) for c in encrypt_chunks(_chunks(model), ring, digest=digest)))
    dec_s = best(lambda: sum(len(c) for c in decrypt_chunks(iter(sealed), ring, digest=digest)))
    verify_s = best(lambda: verify_artifact(art, keys.public))
    figures: dict[str, dict[str, float]] = {}
    for label, ring_or_none in (("clear", None), ("aes-gcm", ring)) * 2:  # best of two, interleaved
        from replication.keys import Keyring

        vs = VersionStore(
            open_store(work / f"store-{label}-{len(figures.get(label, {}))}"),
            ring_or_none or Keyring(),
            node=label,
        )
        vs.init()
        os.sync()  # start each timed write from a clean writeback state (fsync costs otherwise leak)
        put_s, _ = _timed(lambda vs=vs: upload_artifact(art, vs, keys.public, now=0.0))
        cache = work / f"co-{label}-{put_s}"
        os.sync()
        out_s, _ = _timed(lambda vs=vs, cache=cache: materialise(vs, art.name, cache, keys.public))
        best = figures.setdefault(label, {})
        best["store_put_s_per_mb"] = min(best.get("store_put_s_per_mb", 1e9), put_s / mb)
        best["verified_checkout_s_per_mb"] = min(
            best.get("verified_checkout_s_per_mb", 1e9), out_s / mb
        )
    per_mb = {
        "plain_copy_s_per_mb": copy_s / mb,
        "sha256_s_per_mb": sha_s / mb,
        "aes_gcm_encrypt_s_per_mb": enc_s / mb,
        "aes_gcm_decrypt_verify_s_per_mb": dec_s / mb,
        "signature_verify_artifact_s_per_mb": verify_s / mb,
        "store": figures,
    }
    per_mb["ratios_to_plain_copy"] = {
        k: round(v / per_mb["plain_copy_s_per_mb"], 2)
        for k, v in per_mb.items()
        if k.endswith("_per_mb") and k != "plain_copy_s_per_mb"
    }
    per_mb["encryption_overhead_checkout_ratio"] = round(
        figures["aes-gcm"]["verified_checkout_s_per_mb"]
        / figures["clear"]["verified_checkout_s_per_mb"],
        2,
    )
    return per_mb


def cluster_figures(
    work: Path, art: Path, small: Path, keys: Any, key_spec: Any, nodes: int
) -> dict[str, Any]:
    """Publish to every node (W = nodes), then delete the primary and time the promotion."""
    from replication.cluster import ClusterConfig, ReplicationCluster
    from replication.localcluster import local_ray_cluster

    with local_ray_cluster(workers=nodes - 1, object_store_mb=80):
        config = ClusterConfig(
            primary_url=str(work / "primary"),
            node_root=str(work / "nodes"),
            public_key_path=str(keys.public),
            audit_path=str(work / "audit.jsonl"),
            key_spec=key_spec,
            w=nodes,
            actor="bench",
            detached=False,
        )
        rc = ReplicationCluster(config)
        discover_s, _ = _timed(rc.discover)
        publish_s, result = _timed(lambda: rc.publish(art, w=nodes))
        shutil.rmtree(work / "primary")
        fresh = ReplicationCluster(config)
        fresh.discover()
        promote_s, primary = _timed(fresh.resolve_primary)
        next_s, after = _timed(lambda: fresh.publish(small, w=2))
        return {
            "nodes": nodes,
            "start_replicators_s": round(discover_s, 3),
            "publish_w_all_s": round(publish_s, 3),
            "publish_mb_per_s": round(
                art.joinpath("model.onnx").stat().st_size / MB / publish_s, 1
            ),
            "per_node_prepare": result["prepared"],
            "promote_after_primary_loss_s": round(promote_s, 3),
            "promoted": primary.name,
            "next_publish_after_promotion_s": round(next_s, 3),
            "next_publish_committed_on": len(after["committed_on"]),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=3, help="Ray nodes (head + workers)")
    parser.add_argument("--skip-cluster", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from replication.keys import KeySpec, generate_key_file
    from replication.testing import make_keys

    work = Path(tempfile.mkdtemp(prefix="rdbench-"))
    try:
        keys = make_keys(work / "signing")
        generate_key_file(work / "store.key")
        key_spec = KeySpec(files=(str(work / "store.key"),), env_var=None)
        art = _make_artifact(work / "artifacts", "big", keys, args.size_mb)
        small = _make_artifact(work / "artifacts", "small", keys, 1)
        report: dict[str, Any] = {
            "artifact_mb": args.size_mb,
            "per_mb": per_mb_costs(work, art, keys, key_spec),
        }
        if not args.skip_cluster:
            report["cluster"] = cluster_figures(work, art, small, keys, key_spec, args.nodes)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
