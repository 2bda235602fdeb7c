"""Materialise a verified artifact directory from a store: the entry point for serving.

Example:
    >>> from replication import checkout, node_store_path
    >>> version, path = checkout(  # doctest: +SKIP
    ...     node_store_path(), public_key_path="keys/signing.pub", key_provider=KeySpec()
    ... )
    >>> (path / "model.onnx").exists()  # doctest: +SKIP
    True
    >>> checkout_artifact(node_store_path(), public_key_path="keys/signing.pub").manifest  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from durable import fsync_dir
from replication.errors import ConfigError, IntegrityError, VersionError
from replication.keys import Keyring, KeySpec
from replication.repo import VersionStore, check_version_name
from replication.store import open_store

if TYPE_CHECKING:
    from export.verify import VerifiedArtifact, VerifiedCache

__all__ = [
    "ENV_NODE_ROOT",
    "checkout",
    "checkout_artifact",
    "default_cache_dir",
    "materialise",
    "node_name",
    "node_store_path",
]

ENV_NODE_ROOT = "RECDRILL_NODE_STORE_ROOT"


def node_name(node_id: str) -> str:
    """Short, stable label of a Ray node used in directory names and messages."""
    return f"node-{node_id[:12]}"


def node_store_path(root: str | os.PathLike[str] | None = None, node_id: str | None = None) -> Path:
    """The node-local store of ``node_id`` (default: this process's Ray node).

    ``root`` defaults to ``$RECDRILL_NODE_STORE_ROOT``, else ``~/.cache/recdrill/node-stores``.
    """
    if node_id is None:
        import ray

        if not ray.is_initialized():
            raise ConfigError("node_store_path() needs node_id= outside a Ray worker or driver")
        node_id = ray.get_runtime_context().get_node_id()
    base = root or os.environ.get(ENV_NODE_ROOT) or Path.home() / ".cache/recdrill/node-stores"
    return Path(base).expanduser() / node_name(node_id) / "store"


def default_cache_dir(store_url: str) -> Path:
    """Checkouts go beside a local store (``<store>/../checkouts``), else under ~/.cache."""
    if "://" not in store_url or store_url.startswith("file://"):
        local = Path(store_url.removeprefix("file://")).expanduser().resolve()
        return local.parent / "checkouts"
    tag = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    return Path.home() / ".cache/recdrill/checkouts" / tag


def _keyring(key_provider: Keyring | KeySpec | None) -> Keyring:
    if isinstance(key_provider, Keyring):
        return key_provider
    return (key_provider or KeySpec()).load()


def checkout(
    store_url_or_path: str | os.PathLike[str],
    version: str | None = None,
    *,
    public_key_path: str | os.PathLike[str],
    key_provider: Keyring | KeySpec | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    node: str | None = None,
) -> tuple[str, Path]:
    """Return ``(version, directory)`` of a verified copy of a committed version.

    ``version`` defaults to the store's refs/current. Every blob is checked against its sha256
    (after AES-GCM decryption when sealed) and the directory against the artifact signature
    (``export.verify.verify_artifact``) before the path is returned; an existing checkout is
    re-verified and rebuilt if it was altered. Raises IntegrityError naming version, file and
    node on any mismatch, VersionError when the version is absent or not committed.
    ``checkout_artifact`` does the same and also returns the verified manifest.
    """
    artifact = checkout_artifact(store_url_or_path, version, public_key_path=public_key_path,
                                 key_provider=key_provider, cache_dir=cache_dir, node=node)
    return artifact.version, artifact.path


def checkout_artifact(
    store_url_or_path: str | os.PathLike[str],
    version: str | None = None,
    *,
    public_key_path: str | os.PathLike[str],
    key_provider: Keyring | KeySpec | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    node: str | None = None,
    verified: VerifiedCache | None = None,
) -> VerifiedArtifact:
    """``checkout``, returning the directory with its verified Manifest.

    With ``verified``, an existing checkout unchanged since ``verified`` last checked it is
    not hashed again (``export.verify.VerifiedCache``); a fresh copy always is.
    """
    url = os.fspath(store_url_or_path)
    vs = VersionStore(open_store(url), _keyring(key_provider), node=node or url)
    vs.check()
    if version is None:
        ref = vs.get_ref("current")
        if ref is None:
            raise VersionError(f"store {url} has no refs/current yet: publish a version first")
        version = ref.version
    elif version not in vs.committed():
        raise VersionError(
            f"version {version} is not committed in {url}; `python -m replication list` shows "
            "the committed ones"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(url)
    return materialise(vs, version, cache, public_key_path, verified=verified)


def materialise(
    vs: VersionStore,
    version: str,
    cache_dir: Path,
    public_key_path: str | os.PathLike[str],
    *,
    verified: VerifiedCache | None = None,
) -> VerifiedArtifact:
    """Write ``version`` from ``vs`` into ``cache_dir/<version>``, verified; reuse a valid one."""
    from export.errors import ArtifactVerificationError
    from export.verify import VerifiedArtifact, verify_artifact

    target = cache_dir / check_version_name(version)
    if target.is_dir():
        try:
            return VerifiedArtifact(target, verify_artifact(target, public_key_path,
                                                            cache=verified))
        except ArtifactVerificationError:
            _remove(target)
    record = vs.get_record(version)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{version}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        for entry in record.files:
            dest = tmp / entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as fh:
                for chunk in vs.read_blob(entry.sha256, version=version, path=entry.path):
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        try:
            manifest = verify_artifact(tmp, public_key_path)
        except ArtifactVerificationError as exc:
            raise IntegrityError(
                f"artifact verification failed ({exc.reason}): {exc}",
                version=version,
                path=exc.path,
                node=vs.node,
            ) from exc
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process materialised it first; trust it only once verified.
            manifest = verify_artifact(target, public_key_path)
        fsync_dir(cache_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return VerifiedArtifact(target, manifest)


def _remove(path: Path) -> None:
    aside = path.with_name(f".{path.name}.bad-{uuid.uuid4().hex[:8]}")
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)
