"""Training stage: data (fetch, load, clean, split, synthesise), the recommender, evaluation.

Example:
    >>> from training import CleanConfig, load_any, clean_interactions, leave_one_out
    >>> data = leave_one_out(clean_interactions(load_any("data/").interactions))  # doctest: +SKIP
"""

from __future__ import annotations

from training.clean import CleanConfig, SequenceData, clean_interactions, leave_one_out
from training.errors import ConfigError, DataError, FetchError, TrainingError
from training.fetch import fetch_movielens_100k
from training.loaders import ColumnMapping, RawDataset, load_any, load_atomic, load_table
from training.metrics import EvalResult, RankingMetrics, evaluate

__all__ = [
    "CleanConfig",
    "ColumnMapping",
    "ConfigError",
    "DataError",
    "EvalResult",
    "FetchError",
    "RankingMetrics",
    "RawDataset",
    "SequenceData",
    "TrainingError",
    "clean_interactions",
    "evaluate",
    "fetch_movielens_100k",
    "leave_one_out",
    "load_any",
    "load_atomic",
    "load_table",
]
