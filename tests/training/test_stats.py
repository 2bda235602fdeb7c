from __future__ import annotations

import numpy as np
import pytest

from training.metrics import evaluate
from training.stats import compare_to_baselines, paired_bootstrap, seed_spread


def test_constant_lead_has_a_point_interval_above_zero() -> None:
    boot = paired_bootstrap(np.full(50, 0.3), np.full(50, 0.1), resamples=200)
    assert boot.low == pytest.approx(0.2) and boot.high == pytest.approx(0.2)
    assert boot.beats and boot.users == 50


def test_symmetric_noise_is_not_a_win() -> None:
    rng = np.random.default_rng(1)
    ours = rng.random(943)
    theirs = ours + rng.choice([-0.05, 0.05], size=943)
    boot = paired_bootstrap(ours, theirs)
    assert boot.low < 0.0 < boot.high and not boot.beats


def test_interval_is_paired_not_two_sample() -> None:
    # Users differ hugely but the model adds 0.01 to each: a paired test sees a sure win.
    base = np.random.default_rng(2).random(300)
    assert paired_bootstrap(base + 0.01, base, resamples=500).beats


def test_bootstrap_repeats_under_a_seed_and_covers_the_mean() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(200), rng.random(200)
    one, two = paired_bootstrap(a, b, seed=7), paired_bootstrap(a, b, seed=7)
    assert one == two
    assert one.low < one.mean_diff < one.high
    # The spread shrinks like 1/sqrt(n): a 95% interval is about ±1.96 standard errors.
    se = (a - b).std(ddof=1) / np.sqrt(len(a))
    assert (one.high - one.low) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_bootstrap_refuses_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(np.ones(3), np.ones(4))


def test_compare_to_baselines_uses_per_user_ndcg() -> None:
    hist = [np.array([1]), np.array([1]), np.array([1])]
    targets = np.array([2, 3, 2])
    perfect = evaluate(lambda h: np.eye(3)[targets[: len(h)] - 1], hist, targets)
    constant = evaluate(lambda h: np.zeros((len(h), 3)), hist, targets)
    boots = compare_to_baselines({"m": perfect, "zero": constant}, "m", resamples=100)
    assert list(boots) == ["zero"]
    assert boots["zero"].mean_diff == pytest.approx(perfect.unfiltered.ndcg - constant.unfiltered.ndcg)


def test_seed_spread_keeps_models_present_in_every_run() -> None:
    runs = [{"test": {"m": {"ndcg@10": 0.1, "hr@10": 0.2}, "x": {"ndcg@10": 0.0, "hr@10": 0.0}}},
            {"test": {"m": {"ndcg@10": 0.3, "hr@10": 0.2}}}]
    spread = seed_spread(runs)
    assert list(spread) == ["m"]
    assert spread["m"]["ndcg@10"].mean == pytest.approx(0.2)
    assert spread["m"]["ndcg@10"].sd == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert spread["m"]["hr@10"].sd == 0.0
