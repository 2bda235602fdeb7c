"""Scale benchmark of the synthetic data generator: wall time, events/s, peak RSS, file sizes.

Run by hand (importing this module does no work)::

    python -m bench.synthetic_scale --items 1000000 --events 10000000 --out /tmp/synth

The user count is ``events / events-per-user``; the generated event count varies around the
target. Figures go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Sequence

from training.synthetic import SyntheticConfig, generate

__all__ = ["main"]

_MIB = 1024 * 1024


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.synthetic_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000, help="catalog size")
    parser.add_argument("--events", type=int, default=10_000_000, help="target event rows")
    parser.add_argument("--events-per-user", type=float, default=20.0, help="mean events per user")
    parser.add_argument("--categories", type=int, default=None,
                        help="categories (default: items // 2000, at least 50)")
    parser.add_argument("--chunk-users", type=int, default=20_000, help="users per chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/synth", help="output directory")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Generate one dataset at the requested scale and print the figures."""
    args = _parser().parse_args(argv)
    config = SyntheticConfig(
        n_items=args.items,
        n_users=max(1, round(args.events / args.events_per_user)),
        n_categories=args.categories or min(args.items, max(50, args.items // 2000)),
        events_per_user_mean=args.events_per_user,
        chunk_users=args.chunk_users,
        seed=args.seed,
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    summary = generate(config, args.out, progress=not args.no_progress)
    wall_s = time.perf_counter() - started
    figures = {
        "items": summary.n_items, "users": summary.n_users, "events": summary.n_events,
        "sessions": summary.n_sessions, "queries": summary.n_queries,
        "wall_s": round(wall_s, 2), "events_per_s": round(summary.n_events / wall_s),
        "peak_rss_mib": round((summary.peak_rss_bytes or 0) / _MIB, 1),
        "rss_before_generate_mib": round(rss_before / _MIB, 1),
        "file_mib": {name: round(size / _MIB, 1) for name, size in summary.bytes_by_file.items()},
        "chunk_users": config.chunk_users, "categories": config.n_categories,
    }
    if args.json:
        print(json.dumps(figures, sort_keys=True))
        return 0
    print(f"generated {summary.n_events:,} events for {summary.n_users:,} users over "
          f"{summary.n_items:,} items into {args.out}")
    print(f"  wall time        {wall_s:8.1f} s")
    print(f"  events/s         {summary.n_events / wall_s:12,.0f}")
    print(f"  peak RSS         {figures['peak_rss_mib']:8.1f} MiB "
          f"(before generate: {figures['rss_before_generate_mib']} MiB)")
    for name, size in summary.bytes_by_file.items():
        print(f"  {name:<16} {size / _MIB:8.1f} MiB")
    print(f"  sessions {summary.n_sessions:,}, queries {summary.n_queries:,}, "
          f"by type {dict(summary.events_by_type)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
