"""Test, bench and drill helpers shipped with the package: small signed artifact directories
shaped like the export contract, signing keys, a flipped byte, a free port, polling with a
deadline, and killing a Ray node's processes from outside.

The generic helpers (``free_port``, ``port_open``, ``wait_until``, ``poll_until``) live here,
the lowest layer that needs them (``replication.localcluster`` picks a free GCS port);
``serving.testing`` re-exports them with the serving-specific ones.

Example:
    >>> keys = make_keys(Path("/tmp/k"))  # doctest: +SKIP
    >>> make_artifact(Path("/tmp/arts"), "v1", keys)  # doctest: +SKIP
    >>> wait_until(lambda: 42, 1.0, what="the answer")
    42
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

from export.manifest import build_manifest, write_manifest
from export.signing import SIGNING_METHOD, generate_signing_key, sign_artifact

__all__ = [
    "IO",
    "SigningKeys",
    "flip_byte",
    "free_port",
    "kill_node",
    "kill_pids",
    "make_artifact",
    "make_keys",
    "node_processes",
    "poll_until",
    "port_open",
    "wait_until",
]

T = TypeVar("T")

IO = {
    "inputs": [{"name": "item_seq", "dtype": "int64", "shape": ["batch", "seq"]}],
    "outputs": [{"name": "scores", "dtype": "float32", "shape": ["batch", "n_items"]}],
    "max_seq_len": 50,
    "n_items": 100,
}


# -- artifacts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKeys:
    """A signing key pair on disk and its key id."""

    private: Path
    public: Path
    key_id: str


def make_keys(directory: Path) -> SigningKeys:
    """A fresh EC P-256 signing key pair under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "signing.pem", directory / "signing.pub"
    key_id = generate_signing_key(private, public)
    return SigningKeys(private, public, key_id)


def make_artifact(
    root: Path,
    version: str,
    keys: SigningKeys,
    *,
    model_bytes: int = 4096,
    parent: str | None = None,
) -> Path:
    """A signed artifact directory ``root/version`` with random model/items/fallback files."""
    art = root / version
    art.mkdir(parents=True)
    (art / "model.onnx").write_bytes(os.urandom(model_bytes))
    (art / "items.parquet").write_bytes(os.urandom(512))
    (art / "fallback.npz").write_bytes(b"shared-fallback-bytes" * 8)  # same in every version
    manifest = build_manifest(
        art,
        version=version,
        kind="sequential-recommender",
        io=IO,
        metrics={"ndcg@10": 0.4},
        parent=parent,
        signing={"method": SIGNING_METHOD, "key_id": keys.key_id},
    )
    write_manifest(art, manifest)
    sign_artifact(art, keys.private)
    return art


def flip_byte(path: Path, offset: int = -1) -> None:
    """Flip the lowest bit of the byte at ``offset`` (negative: from the end) of ``path``:
    the smallest corruption, which every sha256 or AES-GCM check must catch.

    Example:
        >>> flip_byte(Path("store/blobs/sha256/ab12..."), offset=40)  # doctest: +SKIP
    """
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# -- ports ------------------------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the kernel's pick; another process may take it
    before the caller binds it, so bind soon).

    Example:
        >>> 1024 < free_port() < 65536
        True
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now.

    Example:
        >>> port_open(free_port())
        False
    """
    try:
        socket.create_connection((host, port), timeout_s).close()
    except OSError:
        return False
    return True


# -- polling ----------------------------------------------------------------------------------

def _poll(check: Callable[[], T], timeout_s: float, interval_s: float,
          ignore: tuple[type[BaseException], ...], clock: Callable[[], float],
          sleep: Callable[[float], None]) -> tuple[T | None, BaseException | None]:
    # ``check`` runs at least once, and once more at the deadline: a short timeout never
    # reports failure without having looked.
    deadline = clock() + timeout_s
    while True:
        last: BaseException | None = None
        try:
            value = check()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value, None
        remaining = deadline - clock()
        if remaining <= 0:
            return None, last
        sleep(min(interval_s, remaining))


def poll_until(check: Callable[[], T], timeout_s: float, interval_s: float = 0.1, *,
               ignore: tuple[type[BaseException], ...] = (),
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T | None:
    """Call ``check`` every ``interval_s`` until it returns something truthy (returned) or
    ``timeout_s`` passes (None). Exceptions of the ``ignore`` types count as "not yet".

    For callers that record a timeout rather than fail on it (a drill's proof); to fail,
    use :func:`wait_until`.

    Example:
        >>> poll_until(lambda: [], 0.05, 0.01) is None
        True
    """
    return _poll(check, timeout_s, interval_s, ignore, clock, sleep)[0]


def wait_until(check: Callable[[], T], timeout_s: float, interval_s: float = 0.1, *,
               what: str, ignore: tuple[type[BaseException], ...] = (),
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``check`` every ``interval_s`` until it returns something truthy, and return that;
    raise TimeoutError naming ``what`` (and the last ignored error) after ``timeout_s``.
    Exceptions of the ``ignore`` types count as "not yet"; any other propagates at once.

    Example:
        >>> wait_until(lambda: "up", 5.0, what="the server")
        'up'
        >>> wait_until(lambda: False, 0.05, 0.01, what="the server")
        Traceback (most recent call last):
        ...
        TimeoutError: timed out after 0.05 s waiting for the server
    """
    value, last = _poll(check, timeout_s, interval_s, ignore, clock, sleep)
    if value:
        return value
    detail = f" (last error: {last!r})" if last is not None else ""
    raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}{detail}") from last


# -- processes --------------------------------------------------------------------------------

def kill_pids(pids: Iterable[int]) -> list[int]:
    """SIGKILL every pid back to back; returns the ones that were still there to signal."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(pid)
    return killed


def node_processes(node_id: str) -> list[psutil.Process]:
    """The raylet of Ray node ``node_id`` on this host, then every process it started (its
    workers and agents), found from outside by command line; empty when the node's raylet
    is not a process on this host.

    Example:
        >>> node_processes("0" * 56)
        []
    """
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "raylet" and f"--node_id={node_id}" in (
                    proc.info["cmdline"] or []):
                return [proc, *proc.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return []


def kill_node(node_id: str, *, raylet_only: bool = False) -> list[int]:
    """SIGKILL Ray node ``node_id``'s raylet and, unless ``raylet_only``, every process it
    started, at once (a machine lost; raylet only: its workers notice and exit on their own).
    Returns the pids signalled; raises ProcessLookupError when the raylet is not on this host.

    Example:
        >>> kill_node(lc.workers[0].node_id)  # doctest: +SKIP
        [81234, 81240, 81262]
    """
    procs = node_processes(node_id)
    if not procs:
        raise ProcessLookupError(f"node {node_id[:12]}: no raylet process on this host; kill "
                                 "a node from the machine it runs on")
    return kill_pids(p.pid for p in (procs[:1] if raylet_only else procs))
