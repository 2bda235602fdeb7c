"""Canary rollout with automatic rollback: start the canary, watch online feedback, act.

``canary_rollout`` puts a new version on every replica as a canary for a share of the
traffic, then polls every replica's ``GET /v1/feedback/stats``, sums the feedback recorded
since the canary started (each replica's tallies minus a baseline taken at the start), and
asks ``serving.canary.judge`` what to do:

* ROLLBACK: the canary is cleared on every replica (``set_version(settings, stable)``), then
  ``rollback(stable)`` runs if given (pass ``ReplicationCluster.rollback`` so refs/current
  points at the stable version in every store again);
* PROMOTE: the canary becomes the stable version on every replica;
* no decision by ``timeout_s``: the canary is cleared (the safe default), outcome "undecided".

Whatever goes wrong in between, the canary is cleared before the error propagates. The I/O
(``set_version``, ``fetch_stats``, ``clock``, ``sleep``) is injectable, so tests drive the loop
with fakes and no Ray.

Example:
    >>> result = canary_rollout(settings, "v1", "v2", share=0.1, gate=CanaryGate(),
    ...                         timeout_s=600, rollback=cluster.rollback)  # doctest: +SKIP
    >>> result.outcome, result.reason  # doctest: +SKIP
    ('rolled-back', 'canary below the gate: canary HR@10 0.120 (24/200) vs 0.8 x ...')
"""

from __future__ import annotations

import functools
import json
import logging
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from serving.canary import CanaryGate, Judgement, Tally, judge
from serving.config import ServeSettings

__all__ = ["OUTCOMES", "RolloutResult", "canary_rollout", "fetch_replica_stats", "tally_since"]

log = logging.getLogger(__name__)

OUTCOMES = ("rolled-back", "promoted", "undecided")
Stats = list[dict[str, Any]]  # what each replica's GET /v1/feedback/stats answered
_Snapshot = dict[str, dict[str, Tally]]  # replica -> version -> tally


@dataclass(frozen=True)
class RolloutResult:
    """How a canary rollout ended; times are seconds since the rollout began.

    Example:
        >>> RolloutResult("undecided", "v2", "v1", 30.0, 1.5, None, "timeout", Tally(),
        ...               Tally(), 57).to_dict()["outcome"]
        'undecided'
    """

    outcome: str  # one of OUTCOMES
    version: str
    stable: str
    seconds: float
    canary_started_s: float
    decided_s: float | None
    reason: str
    stable_tally: Tally
    canary_tally: Tally
    checks: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tallies as ``{"shown", "hits"}``), for journals and CLI output."""
        return asdict(self)


def fetch_replica_stats(app_name: str, timeout_s: float = 1.0) -> Stats:
    """Every registered replica's ``/v1/feedback/stats``; replicas that don't answer are skipped.

    Needs a Ray connection (the addresses come from ``serving.deployment.list_replicas``).

    Example:
        >>> [s["canary"] for s in fetch_replica_stats("recdrill")]  # doctest: +SKIP
        ['v2', 'v2']
    """
    from serving.deployment import list_replicas

    out = []
    for replica in list_replicas(app_name):
        url = f"http://{replica['host']}:{replica['http_port']}/v1/feedback/stats"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                out.append(json.loads(resp.read()))
        except (OSError, ValueError) as exc:  # restarting or gone: the others still count
            log.debug("feedback stats of %s unavailable: %s", url, exc)
    return out


def _snapshot(stats: Stats) -> _Snapshot:
    return {s["replica"]: {v: Tally(int(t["shown"]), int(t["hits"]))
                           for v, t in s["tally"].items()} for s in stats}


def tally_since(baseline: Stats, now: Stats) -> dict[str, Tally]:
    """Feedback per version recorded after ``baseline``, summed over replicas.

    Each replica's tallies minus its own baseline; a replica absent from the baseline (one
    started since, e.g. a restarted replica) counts in full, and a count that went down (a
    version evicted from a replica's bounded tallies) counts from zero.

    Example:
        >>> before = [{"replica": "r0", "tally": {"v1": {"shown": 5, "hits": 2}}}]
        >>> after = [{"replica": "r0", "tally": {"v1": {"shown": 8, "hits": 3}}},
        ...          {"replica": "r1", "tally": {"v2": {"shown": 4, "hits": 1}}}]
        >>> tally_since(before, after)
        {'v1': Tally(shown=3, hits=1), 'v2': Tally(shown=4, hits=1)}
    """
    base, out = _snapshot(baseline), dict[str, Tally]()
    for replica, tallies in _snapshot(now).items():
        for version, tally in tallies.items():
            old = base.get(replica, {}).get(version, Tally())
            delta = (tally if tally.shown < old.shown or tally.hits < old.hits
                     else Tally(tally.shown - old.shown, tally.hits - old.hits))
            out[version] = out.get(version, Tally()) + delta
    return out


def canary_rollout(settings: ServeSettings, stable: str, version: str, *, share: float,
                   gate: CanaryGate, timeout_s: float, poll_s: float = 0.5,
                   rollback: Callable[[str], object] | None = None,
                   fetch_stats: Callable[[], Stats] | None = None,
                   set_version: Callable[..., object] | None = None,
                   start_timeout_s: float = 30.0,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], object] = time.sleep) -> RolloutResult:
    """Run ``version`` as a canary on ``share`` of the traffic next to ``stable`` and decide.

    ``timeout_s`` bounds the whole rollout; ``start_timeout_s`` (at most ``timeout_s``) bounds
    the wait for every answering replica to report the canary in service (a refused canary
    never does: outcome "undecided"). Defaults: ``set_version`` is
    ``serving.deployment.set_version`` and ``fetch_stats`` reads every registered replica.

    Example:
        >>> canary_rollout(settings, "v1", "v2", share=0.2, gate=CanaryGate(min_feedback=100),
        ...                timeout_s=300).outcome  # doctest: +SKIP
        'rolled-back'
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"share: expected strictly between 0 and 1 (both arms need feedback), "
                         f"found {share}")
    if version == stable:
        raise ValueError(f"canary version {version!r} is the stable version; name a new one")
    if set_version is None:
        from serving import deployment

        set_version = deployment.set_version
    if fetch_stats is None:
        fetch_stats = functools.partial(fetch_replica_stats, settings.app_name)
    run = _Rollout(settings, stable, version, gate, set_version, fetch_stats, clock, sleep)
    return run.execute(share, timeout_s, min(start_timeout_s, timeout_s), poll_s, rollback)


class _Rollout:
    """One rollout's state; ``execute`` is the loop, the rest are its named steps."""

    def __init__(self, settings: ServeSettings, stable: str, version: str, gate: CanaryGate,
                 set_version: Callable[..., object], fetch_stats: Callable[[], Stats],
                 clock: Callable[[], float], sleep: Callable[[float], object]) -> None:
        self.settings, self.stable, self.version, self.gate = settings, stable, version, gate
        self._set_version, self._fetch, self._clock, self._sleep = (set_version, fetch_stats,
                                                                    clock, sleep)
        self._t0 = clock()
        self.started_s = 0.0
        self.checks = 0
        self.tallies = (Tally(), Tally())
        self.canary_live = False

    def elapsed(self) -> float:
        return self._clock() - self._t0

    def execute(self, share: float, timeout_s: float, start_timeout_s: float, poll_s: float,
                rollback: Callable[[str], object] | None) -> RolloutResult:
        try:
            log.info("canary %s on %.0f%% of traffic next to %s", self.version, share * 100,
                     self.stable)
            self.canary_live = True
            self._set_version(self.settings, self.stable, canary=self.version,
                              canary_share=share)
            baseline = self.wait_until_live(start_timeout_s, poll_s)
            if baseline is None:
                self.clear_canary()
                return self.result("undecided", None, f"canary {self.version} was not in "
                                   f"service on every replica within {start_timeout_s:g} s "
                                   "(refused? see the replicas' refusals); canary cleared")
            while True:
                self._sleep(poll_s)
                judgement, reason = self.check(baseline)
                if judgement is Judgement.ROLLBACK:
                    decided = self.elapsed()
                    self.clear_canary()
                    if rollback is not None:
                        log.info("rolling the stores back to %s", self.stable)
                        rollback(self.stable)
                    return self.result("rolled-back", decided, reason)
                if judgement is Judgement.PROMOTE:
                    decided = self.elapsed()
                    log.info("promoting %s: %s", self.version, reason)
                    self._set_version(self.settings, self.version)
                    self.canary_live = False
                    return self.result("promoted", decided, reason)
                if self.elapsed() >= timeout_s:
                    self.clear_canary()
                    return self.result("undecided", None, f"no decision within {timeout_s:g} s "
                                       f"({reason}); canary cleared")
        finally:
            if self.canary_live:  # an error on the way: never leave a canary behind
                log.error("rollout of %s failed; clearing the canary", self.version)
                self.clear_canary()

    def wait_until_live(self, start_timeout_s: float, poll_s: float) -> Stats | None:
        """Stats once every answering replica reports the canary (the baseline), else None."""
        while True:
            stats = self._fetch()
            if stats and all(s.get("canary") == self.version for s in stats):
                self.started_s = self.elapsed()
                log.info("canary %s live on %d replica(s) after %.1f s", self.version,
                         len(stats), self.started_s)
                return stats
            if self.elapsed() >= start_timeout_s:
                return None
            self._sleep(poll_s)

    def check(self, baseline: Stats) -> tuple[Judgement, str]:
        since = tally_since(baseline, self._fetch())
        self.tallies = (since.get(self.stable, Tally()), since.get(self.version, Tally()))
        self.checks += 1
        judgement, reason = judge(self.gate, *self.tallies)
        log.debug("check %d: %s: %s", self.checks, judgement.value, reason)
        return judgement, reason

    def clear_canary(self) -> None:
        log.info("clearing canary %s: %s serves everything", self.version, self.stable)
        self._set_version(self.settings, self.stable)
        self.canary_live = False

    def result(self, outcome: str, decided_s: float | None, reason: str) -> RolloutResult:
        log.info("canary %s: %s: %s", self.version, outcome, reason)
        return RolloutResult(outcome, self.version, self.stable, self.elapsed(), self.started_s,
                             decided_s, reason, self.tallies[0], self.tallies[1], self.checks)
