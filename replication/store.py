"""Byte stores: a small ``Store`` protocol, an fsspec implementation and an in-memory fake.

Keys are ``/``-separated relative paths (``blobs/sha256/ab..``). Writes are atomic: a
reader sees the old object or the whole new one. On a local filesystem that is temp +
fsync + rename (``durable``); on object stores (s3://, gs://) a PUT is already atomic.

Example:
    >>> store = open_store("memory://demo")
    >>> store.write_bytes("refs/current", b"v1")
    >>> store.read_bytes("refs/current")
    b'v1'
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from durable import atomic_writer
from replication.errors import NotFound, StoreError, StoreUnavailable

__all__ = ["CHUNK_BYTES", "FsspecStore", "MemoryStore", "Store", "open_store"]

CHUNK_BYTES = 4 * 1024 * 1024


@runtime_checkable
class Store(Protocol):
    """Atomic byte store addressed by relative keys."""

    url: str

    def read_bytes(self, key: str) -> bytes: ...
    def read_range(self, key: str, start: int, length: int) -> bytes: ...
    def iter_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def write_chunks(self, key: str, chunks: Iterable[bytes]) -> None: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def local_path(self) -> Path | None: ...


class FsspecStore:
    """A store over any fsspec filesystem; plain paths and ``file://`` use atomic renames."""

    def __init__(self, url: str) -> None:
        import fsspec  # imported lazily: fsspec pulls in a few plugins at import time

        self.url = url
        try:
            self._fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise StoreError(
                f"cannot open store {url!r}: {exc}; install the fsspec backend for this scheme "
                "(e.g. s3fs, gcsfs) or pass a plain path"
            ) from exc
        self._root = root.rstrip("/")
        protocols = (
            self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
        )
        self._local = "file" in protocols or "local" in protocols

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def local_path(self) -> Path | None:
        """The store's root directory when it lives on the local filesystem."""
        return Path(self._root) if self._local else None

    def read_bytes(self, key: str) -> bytes:
        try:
            return bytes(self._fs.cat_file(self._path(key)))
        except FileNotFoundError as exc:
            raise NotFound(f"{key} not found in store {self.url}") from exc
        except OSError as exc:
            raise StoreError(f"reading {key} from {self.url} failed: {exc}") from exc

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            return bytes(self._fs.cat_file(self._path(key), start=start, end=start + length))
        except FileNotFoundError as exc:
            raise NotFound(f"{key} not found in store {self.url}") from exc
        except OSError as exc:
            raise StoreError(f"reading {key} from {self.url} failed: {exc}") from exc

    def iter_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            with self._fs.open(self._path(key), "rb") as fh:
                while chunk := fh.read(chunk_bytes):
                    yield chunk
        except FileNotFoundError as exc:
            raise NotFound(f"{key} not found in store {self.url}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        self.write_chunks(key, [data])

    def write_chunks(self, key: str, chunks: Iterable[bytes]) -> None:
        path = self._path(key)
        try:
            if self._local:
                with atomic_writer(path) as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                return
            # Object stores publish an object only when its upload completes; write under a
            # temporary key first anyway so that a failed upload never shadows the old object.
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with self._fs.open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            self._fs.mv(tmp, path)
        except OSError as exc:
            raise StoreError(f"writing {key} to {self.url} failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            return bool(self._fs.exists(self._path(key)))
        except OSError as exc:
            raise StoreError(f"checking {key} in {self.url} failed: {exc}") from exc

    def size(self, key: str) -> int:
        try:
            return int(self._fs.size(self._path(key)))
        except FileNotFoundError as exc:
            raise NotFound(f"{key} not found in store {self.url}") from exc

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        try:
            found = self._fs.find(base)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreUnavailable(f"listing {prefix} in {self.url} failed: {exc}") from exc
        keys = []
        for full in found:
            rel = (
                str(full)[len(self._root) + 1 :] if str(full).startswith(self._root) else str(full)
            )
            if ".tmp" not in rel.rsplit("/", 1)[-1]:
                keys.append(rel)
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            self._fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"deleting {key} from {self.url} failed: {exc}") from exc


class MemoryStore:
    """An in-process fake store for unit tests, with a driver to simulate outages.

    Example:
        >>> s = MemoryStore()
        >>> s.set_unavailable(True)
        >>> s.exists("x")
        Traceback (most recent call last):
        ...
        replication.errors.StoreUnavailable: memory store memory:// is unavailable (set_unavailable)
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.objects: dict[str, bytes] = {}
        self._down = False
        self._lock = threading.Lock()

    def set_unavailable(self, down: bool) -> None:
        """Make every call raise ``StoreUnavailable`` (a lost primary)."""
        self._down = down

    def _check(self) -> None:
        if self._down:
            raise StoreUnavailable(f"memory store {self.url} is unavailable (set_unavailable)")

    def local_path(self) -> Path | None:
        return None

    def read_bytes(self, key: str) -> bytes:
        self._check()
        try:
            return self.objects[key]
        except KeyError as exc:
            raise NotFound(f"{key} not found in store {self.url}") from exc

    def read_range(self, key: str, start: int, length: int) -> bytes:
        return self.read_bytes(key)[start : start + length]

    def iter_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        data = self.read_bytes(key)
        for offset in range(0, len(data), chunk_bytes):
            yield data[offset : offset + chunk_bytes]

    def write_bytes(self, key: str, data: bytes) -> None:
        self._check()
        with self._lock:
            self.objects[key] = bytes(data)

    def write_chunks(self, key: str, chunks: Iterable[bytes]) -> None:
        self.write_bytes(key, b"".join(chunks))

    def exists(self, key: str) -> bool:
        self._check()
        return key in self.objects

    def size(self, key: str) -> int:
        return len(self.read_bytes(key))

    def list(self, prefix: str) -> list[str]:
        self._check()
        want = prefix.rstrip("/") + "/"
        return sorted(k for k in self.objects if k.startswith(want))

    def delete(self, key: str) -> None:
        self._check()
        with self._lock:
            self.objects.pop(key, None)


_MEMORY_STORES: dict[str, MemoryStore] = {}


def open_store(url: str | os.PathLike[str]) -> Store:
    """Open a store by URL: a plain path, ``file://``, ``memory://NAME`` or any fsspec URL.

    ``memory://NAME`` returns the same in-process fake for the same name (tests only).
    """
    text = os.fspath(url)
    if not text:
        raise StoreError(
            "empty store URL: pass a directory path or an fsspec URL such as s3://bucket/x"
        )
    if text.startswith("memory://"):
        return _MEMORY_STORES.setdefault(text, MemoryStore(text))
    if "://" not in text:
        text = str(Path(text).expanduser().resolve())
    return FsspecStore(text)
