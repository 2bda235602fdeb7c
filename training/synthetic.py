"""Seeded synthetic e-commerce data, streamed to Parquet with bounded memory.

Output directory (the contract with the loaders)::

    items.parquet    item_id str ("i0000123"), title str, category str, price float64,
                     popularity_rank int64 (1 = most popular)
    events.parquet   user_id str ("u0000042"), item_id str, timestamp int64 (unix s, strictly
                     increasing per user), event_type str (view|click|cart|buy), session_id int64
    queries.parquet  query str, item_id str (a relevant item), user_id str ("" = anonymous)
    meta.json        format, config, counts, file sizes; written last, so no meta.json means
                     the directory is incomplete

Events are grouped by user in time order; one Parquet row group per chunk of users. The same
config (seed included) gives byte-identical files with the same pyarrow version.

Example:
    >>> from training.synthetic import SyntheticConfig, generate
    >>> summary = generate(SyntheticConfig(n_items=1_000, n_users=100, seed=1), "/tmp/synth",
    ...                    progress=False)  # doctest: +SKIP
    >>> summary.n_events  # doctest: +SKIP
    2031
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from durable import atomic_write_text, fsync_dir
from training.synthetic_catalog import ITEMS_SCHEMA, build_catalog
from training.synthetic_config import SyntheticConfig
from training.synthetic_events import EVENT_TYPES, EVENTS_SCHEMA, QUERIES_SCHEMA, generate_chunk

__all__ = [
    "EVENTS_FILE", "EVENTS_SCHEMA", "EVENT_TYPES", "FORMAT", "ITEMS_FILE", "ITEMS_SCHEMA",
    "META_FILE", "QUERIES_FILE", "QUERIES_SCHEMA", "SyntheticConfig", "SyntheticSummary",
    "generate",
]

FORMAT = "recdrill-synthetic/1"
ITEMS_FILE, EVENTS_FILE, QUERIES_FILE, META_FILE = (
    "items.parquet", "events.parquet", "queries.parquet", "meta.json")
_COMPRESSION = "zstd"
_ITEMS_ROW_GROUP = 131_072


@dataclass(frozen=True)
class SyntheticSummary:
    """What ``generate`` wrote and what it cost.

    ``peak_rss_bytes`` is the whole process's peak resident set so far (``getrusage``), or
    ``None`` where the platform does not report it.
    """

    out_dir: Path
    n_items: int
    n_users: int
    n_events: int
    n_sessions: int
    n_queries: int
    events_by_type: Mapping[str, int]
    bytes_by_file: Mapping[str, int]
    seconds: float
    peak_rss_bytes: int | None


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]synthetic[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled,
    )


def _rng(seed: int, *key: int) -> np.random.Generator:
    # Independent streams per purpose and per chunk, all derived from the one seed.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def generate(config: SyntheticConfig, out_dir: str | os.PathLike[str],
             progress: bool = True) -> SyntheticSummary:
    """Generate the dataset of ``config`` into ``out_dir`` (created; previous output replaced).

    Memory stays bounded by the catalog plus one chunk of ``config.chunk_users`` users.
    The Parquet files are written under temporary names, fsynced and renamed at the end, then
    meta.json is written atomically; an interrupted run leaves no meta.json.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / META_FILE).unlink()  # the directory is incomplete from here until the end
        fsync_dir(out)
    names = (ITEMS_FILE, EVENTS_FILE, QUERIES_FILE)
    temps = {name: out / f".{name}.tmp" for name in names}
    try:
        counts = _write_tables(config, temps, progress)
        for name, temp in temps.items():
            _fsync_file(temp)
            os.replace(temp, out / name)
        fsync_dir(out)
    except BaseException:
        for temp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        raise
    sizes = {name: (out / name).stat().st_size for name in names}
    meta = {"format": FORMAT, "config": config.to_dict(), "counts": counts, "bytes": sizes}
    atomic_write_text(out / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return SyntheticSummary(
        out_dir=out, n_items=counts["items"], n_users=counts["users"], n_events=counts["events"],
        n_sessions=counts["sessions"], n_queries=counts["queries"],
        events_by_type=dict(counts["events_by_type"]), bytes_by_file=sizes,
        seconds=time.perf_counter() - started, peak_rss_bytes=_peak_rss_bytes(),
    )


def _write_tables(config: SyntheticConfig, temps: Mapping[str, Path], progress: bool) -> dict[str, Any]:
    """Write the three Parquet files to ``temps``; return the counts for meta.json."""
    catalog = build_catalog(config, _rng(config.seed, 0))
    pq.write_table(catalog.items_table(), temps[ITEMS_FILE], compression=_COMPRESSION,
                   row_group_size=_ITEMS_ROW_GROUP)
    n_events = n_queries = n_sessions = 0
    by_type = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    with (
        pq.ParquetWriter(temps[EVENTS_FILE], EVENTS_SCHEMA, compression=_COMPRESSION) as events,
        pq.ParquetWriter(temps[QUERIES_FILE], QUERIES_SCHEMA, compression=_COMPRESSION) as queries,
        _progress(progress) as bar,
    ):
        task = bar.add_task("users", total=config.n_users)
        for index, first_user in enumerate(range(0, config.n_users, config.chunk_users)):
            n_users = min(config.chunk_users, config.n_users - first_user)
            chunk = generate_chunk(config, catalog, _rng(config.seed, 1, index),
                                   first_user=first_user, n_users=n_users,
                                   first_session=n_sessions)
            events.write_table(chunk.events)
            queries.write_table(chunk.queries)
            n_events += chunk.events.num_rows
            n_queries += chunk.queries.num_rows
            n_sessions += chunk.n_sessions
            by_type += chunk.events_by_type
            bar.update(task, advance=n_users, description=f"users ({n_events:,} events)")
    return {
        "items": catalog.n_items, "users": config.n_users, "events": n_events,
        "sessions": n_sessions, "queries": n_queries,
        "events_by_type": dict(zip(EVENT_TYPES, (int(k) for k in by_type), strict=True)),
    }
