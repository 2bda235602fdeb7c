"""Bad releases: a validly signed version that ranks worse, pushed while the load runs.

``bad-model`` rolls out a recommender with a shuffled item table as a canary, which the
online HR@10 gate must roll back; ``bad-search`` serves a version whose search ranks worse
(noise in the item embeddings) everywhere for its window, where only a search SLO can see it.
Both leave the pushed version on the context's ``Damage`` until it is taken out.

Example:
    >>> sorted(RELEASE_FAULTS)
    ['bad-model', 'bad-search']
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drills.errors import FaultError
from drills.faults import FAULTS, FaultContext, FaultRecord
from drills.scenario import FAULT_KINDS, FaultSpec
from serving.testing import poll_until

__all__ = ["CANARY_GATE_MIN_FEEDBACK", "CANARY_GATE_MIN_RATIO", "CANARY_SHARE", "RELEASE_FAULTS"]

CANARY_SHARE = 0.25
CANARY_GATE_MIN_FEEDBACK = 100
CANARY_GATE_MIN_RATIO = 0.5


def _push_derived(ctx: FaultContext, fault: str, mutate: Callable[[Path], None]
                  ) -> tuple[str, dict[str, Any]]:
    """Derive a validly signed version changed by ``mutate`` and publish it with W copies;
    returns the stable version and the publish result (recorded as damage to roll back)."""
    if ctx.derive_version is None:
        raise FaultError(f"{fault} publishes a new signed version: give the drill the signing "
                         "key (--signing-key)")
    stable = ctx.sud.version
    if stable is None:
        raise FaultError("nothing published yet")
    try:
        artifact = ctx.derive_version(fault, mutate)
    except FileNotFoundError as exc:
        raise FaultError(f"{fault} cannot derive its version: {exc}") from exc
    published = ctx.sud.rc.publish(str(artifact))
    with ctx.damage.lock:
        ctx.damage.stable_version, ctx.damage.pushed_version = stable, published["version"]
    return stable, published


def bad_model(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """Push a bad model whose integrity is intact (item table shuffled, re-signed): published
    with W copies, then rolled out as a canary on 25% of users by ``serving.rollout``, whose
    online HR@10 gate (from the feedback route) must roll it back on every replica and in
    every store. Proof: the rollout's verdict and tallies, versions served and current after."""
    from drills.artifacts import shuffle_item_ids
    from serving.canary import CanaryGate
    from serving.rollout import canary_rollout

    stable, published = _push_derived(ctx, "bad-model",
                                      shuffle_item_ids(ctx.rng.randrange(1 << 30)))
    bad = published["version"]
    rec.targets = [(f"version {bad} (item table shuffled, validly signed) as a canary on "
                    f"{CANARY_SHARE:.0%} of users")]
    rec.proof["published"] = {k: published[k] for k in ("version", "committed_on")}
    rec.injected_at_s = ctx.now_s()
    gate = CanaryGate(min_feedback=CANARY_GATE_MIN_FEEDBACK, min_ratio=CANARY_GATE_MIN_RATIO)
    result = canary_rollout(ctx.sud.settings, stable, bad, share=CANARY_SHARE, gate=gate,
                            timeout_s=max(5.0, spec.duration_s - 5.0),
                            rollback=ctx.sud.rc.rollback)
    rec.proof["rollout"] = result.to_dict()
    rec.proof["served_after"] = ctx.sud.served_versions()
    current = ctx.sud.rc.list_versions()["current"]
    rec.proof["store_current_after"] = current
    rolled_back = (result.outcome == "rolled-back" and current == stable
                   and all(v == stable for v in rec.proof["served_after"].values()))
    rec.facts["rolled_back"] = rolled_back
    rec.facts["rollback_s"] = round(result.seconds, 2) if rolled_back else None
    if rolled_back:
        with ctx.damage.lock:
            ctx.damage.pushed_version = None


def bad_search(ctx: FaultContext, spec: FaultSpec, rec: FaultRecord) -> None:
    """Publish a version whose search ranks worse but whose integrity is intact (noise of norm
    ``factor`` in the item embeddings, re-signed; the recommender untouched; the load probe
    still passes), serve it everywhere for ``duration_s``, then put the stable version back:
    only a search SLO can see this fault. Proof: the versions every replica serves after each
    swap. (A version whose search is broken outright, permuted embeddings, is refused by the
    replicas' search probe and never serves.)"""
    from drills.artifacts import blur_search_embeddings
    from serving.deployment import set_version

    stable, published = _push_derived(ctx, "bad-search", blur_search_embeddings(
        ctx.rng.randrange(1 << 30), noise=spec.factor))
    bad = published["version"]
    rec.targets = [(f"version {bad} (noise of norm {spec.factor:g} in the search item "
                    "embeddings, validly signed) on every replica")]
    rec.proof["published"] = {k: published[k] for k in ("version", "committed_on")}
    rec.injected_at_s = ctx.now_s()
    swapped = _serve_everywhere(ctx, bad, max(5.0, spec.duration_s / 2), set_version)
    rec.proof["served_after"] = swapped or ctx.sud.served_versions()
    rec.facts["served_everywhere"] = swapped is not None
    rec.facts["swap_s"] = round(ctx.now_s() - rec.injected_at_s, 2) if swapped else None
    if swapped is None:
        raise FaultError(f"the replicas did not take {bad} (served: {rec.proof['served_after']}"
                         "); did its probe refuse it? see the replicas' logs")
    # Swapping back takes about as long as swapping in: start early, so the stable version
    # serves again by about the end of the fault's window.
    time.sleep(max(0.0, rec.injected_at_s + spec.duration_s - 2 * rec.facts["swap_s"]
                   - ctx.now_s()))
    ctx.sud.rc.rollback(stable)
    restored = _serve_everywhere(ctx, stable, 30.0, set_version)
    rec.proof["served_after_restore"] = restored or ctx.sud.served_versions()
    rec.facts["restored"] = restored is not None
    rec.facts["restored_at_s"] = ctx.now_s() if restored is not None else None
    if restored is not None:
        with ctx.damage.lock:
            ctx.damage.pushed_version = None


def _serve_everywhere(ctx: FaultContext, version: str, timeout_s: float,
                      set_version: Callable[..., None]) -> dict[int, str | None] | None:
    """Swap every replica to ``version``; the versions served once all have it, else None
    (``set_version`` returns before the replicas have reconfigured)."""
    set_version(ctx.sud.settings, version)

    def everywhere() -> dict[int, str | None] | None:
        served = ctx.sud.served_versions()
        return served if served and all(v == version for v in served.values()) else None

    return poll_until(everywhere, timeout_s, 0.2)


RELEASE_FAULTS: dict[str, Callable[[FaultContext, FaultSpec, FaultRecord], None]] = {
    "bad-model": bad_model,
    "bad-search": bad_search,
}
assert set(FAULTS) | set(RELEASE_FAULTS) | {"overload"} == {
    k for k, v in FAULT_KINDS.items() if v != "region"}, "a fault kind lacks its injector"
