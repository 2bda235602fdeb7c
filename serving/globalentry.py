"""The global entry: one HTTP and one gRPC address in front of the regions' front doors, for
region-loss disaster recovery. A real load balancer (HAProxy, supervised exactly like the
regional :class:`serving.frontdoor.FrontDoor`) sends every request to the primary region and
to a standby (an HAProxy ``backup`` server) only while no primary answers its checks.

How a region is lost and found (the directives, in ``render_global_config``):

- Checks: ``GET /readyz`` on each regional door's HTTP port (200 iff that region has a ready
  replica) every 200 ms; 2 misses mark a region down, 3 passes bring it back. A DOWN region is
  checked every 500 ms (``downinter``), one changing state every 100 ms (``fastinter``).
- Live traffic is a check too (``observe layer4 error-limit 1 on-error mark-down``): the first
  refused or timed-out connection marks the region down at once, without waiting for a check.
- A request that meets a dead region is sent again (``retries 3``, ``option redispatch 1``:
  every retry picks a server anew, so it lands on the standby once the primary is down;
  ``retry-on conn-failure empty-response response-timeout 503``; bodies buffered by
  ``option http-buffer-request`` so a POST can be re-sent). Three, because attempts on pooled
  connections to the dead region fail at once without marking it down (only a refused or
  timed-out *new* connection does): with 2, a request ran out of attempts in 3 of 12 kills.
  A refused one waits min(``timeout connect``, 1 s) before its retry (HAProxy's turn-around
  with a single active server): ≈ 0.5 s, for the few requests that meet the dead region.
- ``on-marked-down shutdown-sessions``: requests waiting on a region that goes down are cut
  and re-sent to the standby instead of waiting ``server_timeout_ms``. A frozen region's
  requests (≈ 240 at 200 req/s) then answer within ≈ 1.4 s, none failed; without it they
  wait 5 s, past most clients' patience. Its price: a crash loses about one request, the one
  being retried when the region is marked down (HAProxy logs it ``DH--``), where without it
  none was lost (``shutdown_sessions=False``).
- Failback: once the primary passes ``rise`` checks new requests go to it; requests already on
  the standby finish there (no ``shutdown-backup-sessions``). Only the first listed standby
  takes traffic (no ``allbackups``): standbys are in order of preference.
- Reloads (``update``) close idle client connections only after answering one more request
  (``option idle-close-on-response``), so a keep-alive client never writes into a closed one.
  An update while a region is down failed and slowed no request (measured).
- Every answer carries ``x-recdrill-region: <region>``; the stats port serves HAProxy's
  Prometheus exporter (``/metrics``: ``haproxy_server_status{proxy="regions_http",...}``) and
  ``/stats;csv``, which :meth:`GlobalEntry.live_region` reads.

Example:
    >>> entry = GlobalEntry(GlobalEntryConfig(http_port=7000, stats_port=7404),
    ...                     Path("/tmp/ge"))  # doctest: +SKIP
    >>> entry.start([Region("eu", "10.0.1.5", 8000, 9000),
    ...              Region("us", "10.0.2.5", 8000, 9000, backup=True)])  # doctest: +SKIP
    >>> entry.live_region()  # doctest: +SKIP
    'eu'
"""

from __future__ import annotations

import csv
import io
import re
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from serving.frontdoor import HAProxyDoor, haproxy_preamble

__all__ = ["GlobalEntry", "GlobalEntryConfig", "Region", "check_regions", "render_global_config",
           "serving_region"]

HTTP_BACKEND = "regions_http"
GRPC_BACKEND = "regions_grpc"
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class Region:
    """One region's front door; a ``backup`` region takes traffic only while no primary is up."""

    name: str
    host: str
    http_port: int
    grpc_port: int | None = None
    backup: bool = False


@dataclass(frozen=True)
class GlobalEntryConfig:
    """Where the global entry listens and how fast it gives up on a region.

    Defaults aim at a region-loss RTO well under 10 s: a refused connection marks a region down
    at once; a hung one is out after 2 checks (≤ 2 × ``check_timeout_ms`` + ``check_interval_ms``
    ≈ 1.2 s); a returning one needs 3 passes in a row (≈ 0.7 s), which keeps a flapping region
    out. ``server_timeout_ms`` must exceed a regional door's own worst case (its connect +
    server timeouts over its retries).
    """

    http_port: int
    grpc_port: int | None = None
    host: str = "127.0.0.1"
    stats_port: int | None = None
    check_interval_ms: int = 200
    fast_interval_ms: int = 100
    down_interval_ms: int = 500
    check_timeout_ms: int = 500
    fall: int = 2
    rise: int = 3
    error_limit: int = 1
    retries: int = 3
    connect_timeout_ms: int = 500
    server_timeout_ms: int = 5000
    shutdown_sessions: bool = True
    threads: int = 1

    def __post_init__(self) -> None:
        timings = {k: v for k, v in vars(self).items() if k.endswith("_ms") or k in
                   ("fall", "rise", "error_limit", "threads")}
        bad = {k: v for k, v in timings.items() if v < 1}
        if bad or self.retries < 0:
            raise ValueError(f"global entry: timings and counts must be ≥ 1 (retries ≥ 0), got "
                             f"{bad or {'retries': self.retries}}")


def check_regions(regions: Sequence[Region]) -> None:
    """Raise ValueError unless the regions have distinct HAProxy-safe names and at least one
    is a primary (not ``backup``).

    Example:
        >>> check_regions([Region("eu", "h", 1, backup=True)])
        Traceback (most recent call last):
        ...
        ValueError: global entry: no primary region (every one is backup=True); mark one backup=False
    """
    names = [r.name for r in regions]
    if not regions:
        raise ValueError("global entry: no regions; give a primary and at least one standby")
    if bad := [n for n in names if not _NAME.fullmatch(n)]:
        raise ValueError(f"global entry: region names must match {_NAME.pattern}, got {bad}")
    if len(set(names)) != len(names):
        raise ValueError(f"global entry: region names must be distinct, got {names}")
    if all(r.backup for r in regions):
        raise ValueError("global entry: no primary region (every one is backup=True); "
                         "mark one backup=False")


def render_global_config(cfg: GlobalEntryConfig, regions: Sequence[Region],
                         fds: Mapping[str, int] | None = None) -> str:
    """The global entry's HAProxy configuration (pure; regions keep their order, which is the
    standbys' order of preference). ``fds`` as in :func:`serving.frontdoor.render_config`.

    Example:
        >>> text = render_global_config(GlobalEntryConfig(7000), [
        ...     Region("eu", "10.0.1.5", 8000), Region("us", "10.0.2.5", 8000, backup=True)])
        >>> "server eu 10.0.1.5:8000 check\\n" in text, "server us 10.0.2.5:8000 check backup" in text
        (True, True)
    """
    check_regions(regions)
    fds = fds or {}

    def bind(name: str, port: int | None) -> str:
        return f"fd@{fds[name]}" if name in fds else f"{cfg.host}:{port}"

    def backup(r: Region) -> str:
        return " backup" if r.backup else ""

    server = (f"inter {cfg.check_interval_ms}ms fastinter {cfg.fast_interval_ms}ms "
              f"downinter {cfg.down_interval_ms}ms fall {cfg.fall} rise {cfg.rise} "
              f"observe layer4 error-limit {cfg.error_limit} on-error mark-down"
              + (" on-marked-down shutdown-sessions" if cfg.shutdown_sessions else ""))
    check = ["    option httpchk GET /readyz", "    http-check expect status 200",
             "    http-response set-header x-recdrill-region %[srv_name]"]
    lines = [
        *haproxy_preamble(cfg.threads, cfg.connect_timeout_ms, cfg.server_timeout_ms,
                          cfg.retries, f"    timeout check {cfg.check_timeout_ms}ms"),
        "    option idle-close-on-response",
        f"    default-server {server}",
        "",
        "frontend http_in",
        f"    bind {bind('http', cfg.http_port)}",
        f"    default_backend {HTTP_BACKEND}",
        "",
        f"backend {HTTP_BACKEND}",
        "    balance roundrobin",
        "    retry-on conn-failure empty-response response-timeout 503",
        *check,
    ]
    lines += [f"    server {r.name} {r.host}:{r.http_port} check{backup(r)}" for r in regions]
    if cfg.grpc_port is not None:
        lines += [
            "",
            "frontend grpc_in",
            f"    bind {bind('grpc', cfg.grpc_port)} proto h2",
            f"    default_backend {GRPC_BACKEND}",
            "",
            f"backend {GRPC_BACKEND}",
            "    balance roundrobin",
            "    retry-on conn-failure empty-response 503",
            *check,
        ]
        lines += [f"    server {r.name} {r.host}:{r.grpc_port} proto h2 check port {r.http_port} "
                  f"check-proto h1{backup(r)}" for r in regions if r.grpc_port]
    if cfg.stats_port is not None:
        lines += ["", "frontend stats", f"    bind {bind('stats', cfg.stats_port)}",
                  "    http-request use-service prometheus-exporter if { path /metrics }",
                  "    stats enable", "    stats uri /stats"]
    return "\n".join(lines) + "\n"


def serving_region(stats_csv: str, backend: str = HTTP_BACKEND) -> str | None:
    """Which region HAProxy sends new requests to, from its ``/stats;csv`` (pure): the first
    primary that is UP (``UP 1/2``, on its way down, still serves), else the first standby
    that is UP, else None. With several primaries up, traffic is shared; the first is named.

    Example:
        >>> serving_region("# pxname,svname,status,bck\\nregions_http,eu,DOWN,0\\n"
        ...                "regions_http,us,UP,1\\nregions_http,BACKEND,UP,0\\n")
        'us'
    """
    rows = [row for row in csv.DictReader(io.StringIO(stats_csv.removeprefix("# ")))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")]
    up = [row for row in rows if (row.get("status") or "").startswith("UP")]
    for standby in ("0", "1"):
        for row in up:
            if row.get("bck") == standby:
                return row["svname"]
    return None


class GlobalEntry(HAProxyDoor[GlobalEntryConfig, Region]):
    """HAProxy over the regions' front doors: primary while it answers, standby otherwise.

    Listening sockets, respawn, in-place reload and stop are :class:`HAProxyDoor`'s.

    Example:
        >>> from pathlib import Path
        >>> entry = GlobalEntry(GlobalEntryConfig(7000, stats_port=7404), Path("/tmp/ge"))
        >>> entry.start([Region("eu", "10.0.1.5", 8000),
        ...              Region("us", "10.0.2.5", 8000, backup=True)])  # doctest: +SKIP
    """

    _kind = "globalentry"

    def _render(self, targets: tuple[Region, ...]) -> str:
        return render_global_config(self.cfg, targets, self._fds())

    def start(self, regions: Sequence[Region], timeout_s: float = 10.0) -> None:
        """Bind the ports, start HAProxy over ``regions``, wait until it answers. Raises
        ValueError for bad regions (see :func:`check_regions`), OSError for a taken port."""
        check_regions(regions)
        self._start(regions, timeout_s)

    def update(self, regions: Sequence[Region]) -> bool:
        """Reload in place (no connection dropped) if the regions changed; True if it did."""
        check_regions(regions)
        return self._update(regions)

    @property
    def stats_url(self) -> str | None:
        """HAProxy's stats as CSV (None without ``stats_port``)."""
        return (None if self.cfg.stats_port is None
                else f"http://{self.cfg.host}:{self.cfg.stats_port}/stats;csv")

    def live_region(self, timeout_s: float = 1.0) -> str | None:
        """The region new HTTP requests go to now (see :func:`serving_region`), or None when
        none is up. Needs ``stats_port``; raises OSError when the stats port does not answer."""
        if self.stats_url is None:
            raise RuntimeError("global entry: live_region() reads HAProxy's stats; configure "
                               "GlobalEntryConfig(stats_port=...)")
        with urllib.request.urlopen(self.stats_url, timeout=timeout_s) as resp:
            return serving_region(resp.read().decode())
