"""Crash-safe file writes shared by every stage: temp file, fsync, rename.

Example:
    >>> from durable import atomic_write_bytes
    >>> atomic_write_bytes("/tmp/x.bin", b"data")  # doctest: +SKIP
"""

from __future__ import annotations

from durable.files import atomic_write_bytes, atomic_write_text, atomic_writer, fsync_dir

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_writer", "fsync_dir"]
