"""Synthetic shopper behaviour for one chunk of users: sessions, funnel events and queries.

Everything is vectorised over the chunk's *interactions* (one item each, in user order). A
step-wise process (taste switches, neighbour walks) is computed without a Python loop by
forward-filling from the last "restart" index: the value at step ``t`` is the value drawn at
the last restart plus the sum of the steps since then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from training.synthetic_catalog import Catalog, id_strings
from training.synthetic_config import SyntheticConfig

__all__ = ["EVENTS_SCHEMA", "EVENT_TYPES", "QUERIES_SCHEMA", "EventChunk", "generate_chunk"]

EVENT_TYPES = ("view", "click", "cart", "buy")

EVENTS_SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("item_id", pa.string()),
    ("timestamp", pa.int64()),
    ("event_type", pa.string()),
    ("session_id", pa.int64()),
])

QUERIES_SCHEMA = pa.schema([
    ("query", pa.string()),
    ("item_id", pa.string()),
    ("user_id", pa.string()),
])

# Neighbour steps in the category-local ordering, biased forward ("the next one in the series"),
# so that a sequence model can learn direction, which co-occurrence counts cannot.
_STEPS = np.array([-2, -1, 1, 2, 3], dtype=np.int64)
_STEP_PROBS = np.array([0.1, 0.2, 0.45, 0.15, 0.1])
_EVENT_TYPES_ARROW = pa.array(EVENT_TYPES, type=pa.string())


@dataclass(frozen=True, eq=False)
class EventChunk:
    """Tables of one chunk of users, and the counts the summary needs."""

    events: pa.Table
    queries: pa.Table
    n_sessions: int
    events_by_type: tuple[int, int, int, int]


def _last_true_index(flags: np.ndarray) -> np.ndarray:
    """Index of the latest ``True`` at or before each position (``flags[0]`` must be True)."""
    return np.maximum.accumulate(np.where(flags, np.arange(flags.shape[0]), 0))


def _reflect(position: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Fold an unbounded walk into ``[0, size)`` by reflecting at both ends."""
    period = np.maximum(2 * (size - 1), 1)
    folded = np.mod(position, period)
    folded = np.where(folded < size, folded, period - folded)
    return np.where(size == 1, 0, folded)


def _current_categories(config: SyntheticConfig, catalog: Catalog, rng: np.random.Generator,
                        user: np.ndarray, progress: np.ndarray, first: np.ndarray,
                        n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Each interaction's taste category, and whether the taste switched at it."""
    n = int(user.shape[0])
    tastes = catalog.draw_categories(rng.random((n_users, config.tastes_per_user)))
    # Long-term drift: the weights of a user's tastes move from w_old to w_new over their history.
    ones = np.ones(config.tastes_per_user)
    w_old, w_new = rng.dirichlet(ones, n_users), rng.dirichlet(ones, n_users)
    weights = (1.0 - progress)[:, None] * w_old[user] + progress[:, None] * w_new[user]
    pick = (rng.random(n)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1)
    candidate = tastes[user, np.minimum(pick, config.tastes_per_user - 1)]
    explore = rng.random(n) < config.explore_prob
    candidate = np.where(explore, catalog.draw_categories(rng.random(n)), candidate)
    switch = first | (rng.random(n) < config.drift_prob)
    return candidate[_last_true_index(switch)], switch


def _items(config: SyntheticConfig, catalog: Catalog, rng: np.random.Generator,
           cats: np.ndarray, switch: np.ndarray) -> np.ndarray:
    """Each interaction's item slot: a popularity draw, or a neighbour of the previous item."""
    n = int(cats.shape[0])
    fresh = switch | (rng.random(n) >= config.neighbour_prob)
    fresh_local = catalog.draw_local(cats, rng.random(n))
    step = np.where(fresh, 0, rng.choice(_STEPS, size=n, p=_STEP_PROBS))
    walked = np.cumsum(step)
    anchor = _last_true_index(fresh)
    unbounded = fresh_local[anchor] + walked - walked[anchor]
    start = catalog.cat_start[cats]
    slots: np.ndarray = start + _reflect(unbounded, catalog.cat_start[cats + 1] - start)
    return slots


def generate_chunk(config: SyntheticConfig, catalog: Catalog, rng: np.random.Generator, *,
                   first_user: int, n_users: int, first_session: int) -> EventChunk:
    """Generate the events and queries of users ``first_user .. first_user + n_users - 1``.

    Rows come out grouped by user, in time order (timestamps strictly increase per user), and
    session ids continue from ``first_session``.
    """
    lam = max(config.events_per_user_mean / config.events_per_interaction - 1.0, 0.0)
    per_user = 1 + rng.poisson(lam, size=n_users)
    user = np.repeat(np.arange(n_users), per_user)
    user_first = np.cumsum(per_user) - per_user
    position = np.arange(user.shape[0]) - user_first[user]
    first = position == 0
    cats, switch = _current_categories(config, catalog, rng, user, position / per_user[user],
                                       first, n_users)
    slot = _items(config, catalog, rng, cats, switch)
    n_inter = user.shape[0]

    # Funnel depth: 0 view only, 1 click, 2 cart, 3 buy.
    draws = rng.random((3, n_inter))
    clicked = draws[0] < config.click_prob
    carted = clicked & (draws[1] < config.cart_given_click_prob)
    bought = carted & (draws[2] < config.buy_given_cart_prob)
    rows = 1 + clicked.astype(np.int64) + carted + bought

    new_session = first | (rng.random(n_inter) < 1.0 / config.interactions_per_session_mean)
    session_local = np.cumsum(new_session) - 1

    inter_of_row = np.repeat(np.arange(n_inter), rows)
    row_first = np.cumsum(rows) - rows
    step = np.arange(inter_of_row.shape[0]) - row_first[inter_of_row]
    user_of_row = user[inter_of_row]

    # Gaps of at least one second, so time order alone recovers the funnel order.
    scale = np.where(step > 0, config.funnel_step_gap_mean_s,
                     np.where(new_session[inter_of_row], config.session_gap_mean_s,
                              config.interaction_gap_mean_s))
    gap = 1 + np.floor(rng.exponential(1.0, size=step.shape[0]) * scale).astype(np.int64)
    gap[row_first[user_first]] = 0
    elapsed = np.cumsum(gap)
    user_start = config.start_unix_s + rng.integers(0, config.user_start_spread_s, size=n_users)
    timestamp = user_start[user_of_row] + elapsed - elapsed[row_first[user_first]][user_of_row]

    user_ids = id_strings("u", first_user + np.arange(n_users), config.n_users)
    events = pa.Table.from_arrays([
        user_ids.take(pa.array(user_of_row)),
        catalog.item_ids.take(pa.array(slot[inter_of_row])),
        pa.array(timestamp, type=pa.int64()),
        _EVENT_TYPES_ARROW.take(pa.array(step)),
        pa.array(first_session + session_local[inter_of_row], type=pa.int64()),
    ], schema=EVENTS_SCHEMA)

    # Queries lead to clicked items; some come from shoppers who are not logged in.
    asked = np.flatnonzero(clicked & (rng.random(n_inter) < config.query_prob))
    text = catalog.query_text(slot[asked], rng)
    anonymous = rng.random(asked.shape[0]) < config.anonymous_query_prob
    ids_or_empty = pa.concat_arrays([user_ids, pa.array([""], type=pa.string())])
    queries = pa.Table.from_arrays([
        text,
        catalog.item_ids.take(pa.array(slot[asked])),
        ids_or_empty.take(pa.array(np.where(anonymous, n_users, user[asked]))),
    ], schema=QUERIES_SCHEMA)

    counts = np.bincount(step, minlength=4)
    return EventChunk(events=events, queries=queries, n_sessions=int(session_local[-1]) + 1,
                      events_by_type=(int(counts[0]), int(counts[1]), int(counts[2]),
                                      int(counts[3])))
