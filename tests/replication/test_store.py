from __future__ import annotations

from pathlib import Path

import pytest

from replication.errors import NotFound, StoreUnavailable
from replication.store import FsspecStore, MemoryStore, open_store


@pytest.mark.parametrize("url_kind", ["path", "file-url"])
def test_fsspec_store_round_trip(tmp_path: Path, url_kind: str) -> None:
    url = str(tmp_path / "s") if url_kind == "path" else f"file://{tmp_path / 's'}"
    store = open_store(url)
    assert isinstance(store, FsspecStore) and store.local_path() == tmp_path / "s"
    store.write_chunks("blobs/sha256/ab", [b"he", b"llo"])
    store.write_bytes("refs/current", b"v1")
    assert store.read_bytes("blobs/sha256/ab") == b"hello"
    assert store.read_range("blobs/sha256/ab", 1, 3) == b"ell"
    assert b"".join(store.iter_chunks("blobs/sha256/ab", 2)) == b"hello"
    assert store.list("blobs/sha256") == ["blobs/sha256/ab"] and store.size("refs/current") == 2
    store.delete("refs/current")
    assert not store.exists("refs/current")
    with pytest.raises(NotFound):
        store.read_bytes("refs/current")
    assert not [p for p in (tmp_path / "s").rglob("*.tmp")]


def test_failed_write_keeps_the_old_object(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.write_bytes("x", b"old")

    def broken():  # type: ignore[no-untyped-def]
        yield b"new"
        raise OSError("disk full")

    with pytest.raises(Exception, match="disk full"):
        store.write_chunks("x", broken())
    assert store.read_bytes("x") == b"old"


def test_memory_store_outage_driver() -> None:
    store = MemoryStore()
    store.write_bytes("k", b"v")
    store.set_unavailable(True)
    with pytest.raises(StoreUnavailable):
        store.read_bytes("k")
    store.set_unavailable(False)
    assert store.read_bytes("k") == b"v"
