"""Configuration of the synthetic e-commerce generator: one frozen dataclass, validated on creation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SyntheticConfig"]


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate; every field is part of the seed's meaning (same config -> same bytes).

    Behaviour per user: a chain of *interactions* (one item each); the current taste category
    switches with ``drift_prob`` per step, and within a category the next item is a neighbour
    of the previous one (category-local ordering) with ``neighbour_prob``, else a fresh
    popularity draw. Each interaction is a funnel view -> click -> cart -> buy, cut short by the
    conversion probabilities; each funnel step is one event row.

    ``chunk_users`` is the unit of vectorised generation and of Parquet row groups; it shapes
    the random streams, so changing it changes the data (it is recorded in meta.json).

    Example:
        >>> SyntheticConfig(n_items=1_000, n_users=200, seed=7).expected_events
        4000
    """

    n_items: int = 10_000
    n_users: int = 2_000
    n_categories: int = 50
    events_per_user_mean: float = 20.0
    zipf_a: float = 1.1
    drift_prob: float = 0.1
    seed: int = 0
    chunk_users: int = 20_000
    neighbour_prob: float = 0.6
    explore_prob: float = 0.1
    tastes_per_user: int = 3
    n_brands: int = 200
    product_line_len: int = 8
    click_prob: float = 0.35
    cart_given_click_prob: float = 0.3
    buy_given_cart_prob: float = 0.5
    interactions_per_session_mean: float = 6.0
    query_prob: float = 0.25
    anonymous_query_prob: float = 0.2
    start_unix_s: int = 1_700_000_000
    user_start_spread_s: int = 30 * 86_400
    session_gap_mean_s: float = 2 * 86_400.0
    interaction_gap_mean_s: float = 45.0
    funnel_step_gap_mean_s: float = 15.0
    price_median: float = 30.0

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid SyntheticConfig: " + "; ".join(problems))

    def _problems(self) -> Iterator[str]:
        ints = {
            "n_items": 1, "n_users": 1, "n_categories": 1, "chunk_users": 1, "tastes_per_user": 1,
            "n_brands": 1, "product_line_len": 1, "seed": 0, "start_unix_s": 0,
            "user_start_spread_s": 1,
        }
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                yield f"{name} must be an int, found {value!r}"
            elif value < low:
                yield f"{name} must be >= {low}, found {value}"
        probs = ("drift_prob", "neighbour_prob", "explore_prob", "click_prob",
                 "cart_given_click_prob", "buy_given_cart_prob", "query_prob",
                 "anonymous_query_prob")
        for name in probs:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                yield f"{name} must be a probability in [0, 1], found {value!r}"
        positives = ("zipf_a", "session_gap_mean_s", "interaction_gap_mean_s",
                     "funnel_step_gap_mean_s", "price_median")
        for name in positives:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                yield f"{name} must be a finite number > 0, found {value!r}"
        if isinstance(self.n_items, int) and isinstance(self.n_categories, int) \
                and self.n_categories > self.n_items:
            yield (f"n_categories ({self.n_categories}) must not exceed n_items ({self.n_items}): "
                   "every category needs at least one item")
        ipm = self.interactions_per_session_mean
        if not (isinstance(ipm, (int, float)) and math.isfinite(ipm) and ipm >= 1):
            yield f"interactions_per_session_mean must be >= 1, found {ipm!r}"
        epu = self.events_per_user_mean
        if not (isinstance(epu, (int, float)) and math.isfinite(epu)):
            yield f"events_per_user_mean must be a finite number, found {epu!r}"
        elif all(isinstance(getattr(self, p), (int, float)) for p in probs) \
                and epu < self.events_per_interaction:
            yield (f"events_per_user_mean ({epu}) must be >= the events of one interaction "
                   f"({self.events_per_interaction:.3f}, set by the funnel probabilities): "
                   "every user has at least one interaction")

    @property
    def events_per_interaction(self) -> float:
        """Expected event rows of one interaction (the view plus the funnel steps it reaches)."""
        click = self.click_prob
        cart = click * self.cart_given_click_prob
        return 1.0 + click + cart + cart * self.buy_given_cart_prob

    @property
    def expected_events(self) -> int:
        """Expected total event rows (the generated count varies around it)."""
        return round(self.n_users * self.events_per_user_mean)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields."""
        return asdict(self)
