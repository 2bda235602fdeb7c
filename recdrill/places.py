"""Where user data lives on this machine: the places to look, and every file in them.

A *place* is a directory (or one file) the operator names, of one kind: ``data`` (raw
interactions: CSV, TSV, Parquet, RecBole atomic files, possibly sealed), ``checkpoint``
(training checkpoints: ``sequences.npz`` holds clear user ids), ``artifact`` (exported model
versions: ``histories.npz`` holds pseudonyms) or ``store`` (replication stores, by URL). Both
``recdrill data forget`` and ``recdrill compliance`` walk the same places, so what one scrubs
is what the other reports on.

Defaults, used when the operator names no place of a kind, are the paths the other commands
write to when run from the repository root: the MovieLens cache, ``runs/checkpoint``,
``runs/demo/checkpoint``, ``runs/search``, ``runs/demo/search`` and ``runs/demo/artifacts``
(those that exist).

Example:
    >>> scope = Scope(data=(Path("data"),), artifacts=(Path("runs/demo/artifacts"),))
    >>> [(kind, str(path)) for kind, path in scope.places()]
    [('data', 'data'), ('artifact', 'runs/demo/artifacts')]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from recdrill.user_tables import DEFAULT_USER_COLUMNS, Format, format_of
from security.sealed import is_sealed, unseal

__all__ = ["PlaceKind", "Scope", "ScopeError", "StoredFile", "artifact_dirs", "default_scope",
           "open_file", "walk"]

PlaceKind = Literal["data", "checkpoint", "artifact", "store", "register", "audit"]

_DEFAULT_CHECKPOINTS = ("runs/checkpoint", "runs/demo/checkpoint", "runs/search",
                        "runs/demo/search")
_DEFAULT_ARTIFACTS = ("runs/demo/artifacts",)
_MOVIELENS = "ml-100k"
_MANIFEST = "manifest.json"


class ScopeError(ValueError):
    """A place the operator named does not exist or cannot be read."""


@dataclass(frozen=True)
class Scope:
    """The places to look in, by kind; ``user_columns`` names the user-id columns of tables."""

    data: tuple[Path, ...] = ()
    checkpoints: tuple[Path, ...] = ()
    artifacts: tuple[Path, ...] = ()
    stores: tuple[str, ...] = ()
    user_columns: tuple[str, ...] = DEFAULT_USER_COLUMNS
    store_key_files: tuple[Path, ...] = field(default=(), repr=False)

    def places(self) -> Iterator[tuple[PlaceKind, Path]]:
        """Every local place with its kind, in a stable order."""
        yield from (("data", p) for p in self.data)
        yield from (("checkpoint", p) for p in self.checkpoints)
        yield from (("artifact", p) for p in self.artifacts)

    def check(self) -> Scope:
        """This scope, once every named local place exists (ScopeError naming the first that
        does not)."""
        for kind, path in self.places():
            if not path.exists():
                raise ScopeError(f"{kind} place {path} does not exist; expected a directory or "
                                 "file there: check the path (or leave the option out to use "
                                 "the defaults)")
        return self


def _movielens_dir() -> Path:
    from training.fetch import default_cache_dir  # light: no torch

    return default_cache_dir() / _MOVIELENS


def data_place(name: str | os.PathLike[str]) -> Path:
    """A ``--data`` value as a path: ``ml-100k`` is the fetch cache's copy, like ``train``'s."""
    return _movielens_dir() if os.fspath(name) == _MOVIELENS else Path(name)


def default_scope(data: Sequence[str | os.PathLike[str]] = (),
                  checkpoints: Sequence[Path] = (), artifacts: Sequence[Path] = (),
                  stores: Sequence[str] = (), *,
                  user_columns: Sequence[str] = DEFAULT_USER_COLUMNS,
                  store_key_files: Sequence[Path] = ()) -> Scope:
    """The places named; a kind with none named gets its defaults (those that exist). Named
    places must exist (ScopeError naming the first that does not)."""
    def named_or_default(named: Iterable[Path], defaults: Iterable[str | Path]
                         ) -> tuple[Path, ...]:
        return tuple(named) or tuple(p for p in map(Path, defaults) if p.exists())

    return Scope(
        data=named_or_default(map(data_place, data), [_movielens_dir()]),
        checkpoints=named_or_default(checkpoints, _DEFAULT_CHECKPOINTS),
        artifacts=named_or_default(artifacts, _DEFAULT_ARTIFACTS),
        stores=tuple(stores), user_columns=tuple(user_columns),
        store_key_files=tuple(store_key_files),
    ).check()


@dataclass(frozen=True)
class StoredFile:
    """One file of a place; ``artifact`` is the artifact directory it belongs to, if any."""

    kind: PlaceKind
    place: Path
    path: Path
    fmt: Format
    artifact: Path | None = None

    @property
    def rel(self) -> str:
        """The path inside its artifact (or place), POSIX-style."""
        base = self.artifact or (self.place if self.place.is_dir() else self.place.parent)
        return self.path.relative_to(base).as_posix()


def artifact_dirs(place: Path) -> list[Path]:
    """The artifact directories of a place: itself, or its children holding a manifest."""
    if (place / _MANIFEST).is_file():
        return [place]
    if not place.is_dir():
        return []
    return sorted(p for p in place.iterdir()
                  if p.is_dir() and not p.is_symlink() and (p / _MANIFEST).is_file())


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    # Hidden files too: a staging directory left by a crash holds user data as well.
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def walk(scope: Scope) -> list[StoredFile]:
    """Every regular file of every local place of ``scope`` (symbolic links are not followed)."""
    out = []
    for kind, place in scope.places():
        artifacts = artifact_dirs(place) if kind == "artifact" else []
        for path in _files(place):
            owner = next((a for a in artifacts if path.is_relative_to(a)), None)
            out.append(StoredFile(kind, place, path, format_of(path.name), owner))
    return out


def open_file(path: Path, data_key: bytes | None) -> tuple[bytes, bool]:
    """A file's plaintext (opened in memory when sealed) and whether it was sealed.

    A sealed file with no key is a ``security`` SealedDataError naming the file.
    """
    blob = path.read_bytes()
    if not is_sealed(blob):
        return blob, False
    if data_key is None:
        from security.errors import SealedDataError
        from security.paths import data_key_path

        raise SealedDataError(f"{path}: sealed, and no data key at {data_key_path()}; set "
                              "RECDRILL_DATA_KEY to the key the data was sealed with")
    return unseal(blob, data_key, source=str(path)), True
