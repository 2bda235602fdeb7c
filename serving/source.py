"""Where a replica gets a verified artifact directory: a plain directory, or the node's store.

Both sources return a directory only after the artifact's signature and every file's digest
have been checked, so the runner never loads unverified bytes; ``fetch_verified`` hands over
the authenticated Manifest with it, so nothing reads manifest.json again. Each source keeps a
``VerifiedCache``: fetching again a directory unchanged since this process verified it (the
version in service, reloaded) costs a ``stat`` per file, not a re-hash; a changed file is
still refused. Sources are chosen by name (``SOURCES``), and the store one imports
replication/ lazily.

Example:
    >>> src = DirectorySource("/tmp/sample-artifact", "/tmp/sample-artifact.pub")  # doctest: +SKIP
    >>> artifact = src.fetch_verified()  # doctest: +SKIP
    >>> artifact.version, artifact.manifest.io["max_seq_len"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from export.verify import VerifiedArtifact, VerifiedCache
from serving.errors import ModelLoadError

__all__ = ["SOURCES", "ArtifactSource", "DirectorySource", "StoreSource", "make_source"]


class ArtifactSource(Protocol):
    """Returns a verified artifact directory of ``version`` (None: the current one)."""

    def fetch_verified(self, version: str | None = None) -> VerifiedArtifact: ...

    def fetch(self, version: str | None = None) -> tuple[str, Path]:
        """``(version, path)`` of ``fetch_verified``, for callers that need no manifest."""
        ...


@dataclass(frozen=True)
class DirectorySource:
    """An artifact directory, or a directory of ``<version>/`` artifact directories."""

    root: str
    public_key_path: str
    verified: VerifiedCache = field(default_factory=VerifiedCache, compare=False, repr=False)

    def fetch(self, version: str | None = None) -> tuple[str, Path]:
        artifact = self.fetch_verified(version)
        return artifact.version, artifact.path

    def fetch_verified(self, version: str | None = None) -> VerifiedArtifact:
        from export.errors import ExportError
        from export.verify import verify_artifact
        from replication.errors import VersionError
        from replication.repo import check_version_name

        if version is not None:
            # A version names a directory under root: never a path ("/", "../x") to walk.
            try:
                check_version_name(version)
            except VersionError as exc:
                raise ModelLoadError(f"version refused: {exc}") from None
        root = Path(self.root)
        single = (root / "manifest.json").is_file()
        path = root if single or version is None else root / version
        if not single and version is None:
            raise ModelLoadError(f"{root} holds no manifest.json: pass an artifact directory, "
                                 "or name a version inside it")
        try:
            manifest = verify_artifact(path, self.public_key_path, cache=self.verified)
        except ExportError as exc:
            raise ModelLoadError(f"version {version or '(current)'} refused: {exc}") from exc
        if version is not None and manifest.version != version:
            raise ModelLoadError(f"{path} holds version {manifest.version}, expected {version}")
        return VerifiedArtifact(path, manifest)


@dataclass(frozen=True)
class StoreSource:
    """A replication store (default: this Ray node's local store) checked out and verified."""

    store: str
    public_key_path: str
    key_files: tuple[str, ...] = ()
    node_root: str | None = None
    verified: VerifiedCache = field(default_factory=VerifiedCache, compare=False, repr=False)

    def fetch(self, version: str | None = None) -> tuple[str, Path]:
        artifact = self.fetch_verified(version)
        return artifact.version, artifact.path

    def fetch_verified(self, version: str | None = None) -> VerifiedArtifact:
        from replication import KeySpec, node_store_path
        from replication.checkout import checkout_artifact
        from replication.errors import ReplicationError

        url = os.fspath(node_store_path(self.node_root)) if self.store == "node" else self.store
        try:
            return checkout_artifact(url, version, public_key_path=self.public_key_path,
                                     key_provider=KeySpec(files=self.key_files),
                                     verified=self.verified)
        except ReplicationError as exc:
            raise ModelLoadError(f"version {version or 'current'} refused by the store {url}: "
                                 f"{exc}") from exc


SOURCES: dict[str, type[DirectorySource | StoreSource]] = {
    "dir": DirectorySource,
    "store": StoreSource,
}


def make_source(*, artifact: str | None, store: str | None, public_key_path: str,
                key_files: tuple[str, ...] = (), node_root: str | None = None) -> ArtifactSource:
    """Exactly one of ``artifact`` (a directory) or ``store`` (URL, path, or ``"node"``)."""
    if (artifact is None) == (store is None):
        raise ModelLoadError("give exactly one of an artifact directory or a store")
    if artifact is not None:
        return DirectorySource(artifact, public_key_path)
    assert store is not None
    return StoreSource(store, public_key_path, key_files, node_root)
