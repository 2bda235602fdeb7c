"""The artifact manifest: what one model version contains, as canonical JSON.

manifest.json lists every file of the artifact directory (except itself and model.sig) with
its sha256 and size, so that a reader can check each file before loading anything. The
format is a closed pydantic schema (``Manifest``): an unknown or missing field, a wrong type
or a broken invariant is a ManifestError naming the field, e.g. ``files[0].sha256: ...``.

Example:
    >>> m = build_manifest(  # doctest: +SKIP
    ...     "art/", version="20261129T071500Z-3f2a9c", kind="sequential-recommender",
    ...     io={"inputs": [], "outputs": [], "max_seq_len": 50, "n_items": 1682},
    ...     metrics={"ndcg@10": 0.41},
    ... )
    >>> write_manifest("art/", m)  # doctest: +SKIP
    >>> read_manifest("art/") == m  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    ConfigDict,
    PlainValidator,
    Strict,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

from durable import atomic_write_bytes
from export.errors import ArtifactVerificationError, ManifestError

__all__ = [
    "ARTIFACT_FORMAT",
    "KINDS",
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "SIGNING_METHODS",
    "ArtifactFormat",
    "FileEntry",
    "IOSpec",
    "Kind",
    "Manifest",
    "Signing",
    "SigningMethod",
    "TensorSpec",
    "build_manifest",
    "check_directory",
    "hash_file",
    "read_manifest",
    "write_manifest",
]

ArtifactFormat = Literal["recdrill-artifact/1"]
ARTIFACT_FORMAT: ArtifactFormat = "recdrill-artifact/1"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "model.sig"
Kind = Literal["sequential-recommender", "search-encoder"]
SigningMethod = Literal["model-signing/ec-p256", "ed25519"]
KINDS = frozenset(get_args(Kind))
SIGNING_METHODS = frozenset(get_args(SigningMethod))

_CHUNK_BYTES = 1 << 20
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_UNLISTED = frozenset({MANIFEST_FILE, SIGNATURE_FILE})
_MAX_ERRORS_SHOWN = 3
_MAX_INPUT_SHOWN = 80
_MAX_DEPTH = 32  # of the whole document; a real one nests 5 levels (io.inputs[0].shape[0])
# What to do about a bad field, where the field alone does not say it.
_HINTS = {
    "format": "this reader understands only that format: re-export with this version of recdrill",
    "files": "rebuild the manifest with build_manifest",
}
_UNKNOWN = frozenset({"extra_forbidden", "unexpected_keyword_argument"})
_MISSING = frozenset({"missing", "missing_argument", "missing_keyword_only_argument"})
_T = TypeVar("_T")


# -- field checks: each raises ValueError("expected ..., found ..."), pydantic adds the field --

def _utc_timestamp(value: str) -> str:
    try:
        offset = datetime.fromisoformat(value).utcoffset()
    except ValueError:
        offset = None
    if offset is None or offset.total_seconds() != 0:
        raise ValueError(
            f"expected an ISO-8601 UTC timestamp such as '2026-11-29T07:15:00Z', found {value!r}"
        )
    return value


def _finite_number(value: object) -> float:
    # Plain, not float(): a JSON integer stays an integer, so re-serialising keeps its bytes.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, found {value!r}")
    return value


def _plain_json(value: IOSpec) -> IOSpec:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected plain JSON values, found {exc}") from None
    return value


def _relative_path(value: str) -> str:
    pure = PurePosixPath(value)
    if (
        not value
        or pure.is_absolute()
        or ".." in pure.parts
        or pure.as_posix() != value
        or value in _UNLISTED
    ):
        raise ValueError(
            f"expected a normalised relative POSIX path other than manifest.json and "
            f"model.sig, found {value!r}"
        )
    return value


def _sha256_hex(value: str) -> str:
    if not _SHA256_RE.fullmatch(value):
        raise ValueError(f"expected 64 lowercase hex characters, found {value!r}")
    return value


def _sorted_unique(files: tuple[FileEntry, ...]) -> tuple[FileEntry, ...]:
    paths = [entry.path for entry in files]
    if paths != sorted(set(paths)):
        raise ValueError("expected unique paths sorted in ascending order")
    return files


def _hex16(source: str) -> Callable[[str], str]:
    """A validator of a 16-hex key id; ``source`` says where such ids come from."""
    def check(value: str) -> str:
        if not _KEY_ID_RE.fullmatch(value):
            raise ValueError(f"expected 16 lowercase hex characters ({source}), found {value!r}")
        return value
    return check


_key_id = _hex16("see export.signing.key_id_of")
_pseudonym_key_id = _hex16("security.pseudonym.Pseudonymiser.key_id")


def _non_empty(value: str) -> str:
    if not value:
        raise ValueError("expected a non-empty string, found ''")
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError(f"expected a non-negative integer, found {value!r}")
    return value


_NonEmptyStr = Annotated[StrictStr, AfterValidator(_non_empty)]
_Count = Annotated[StrictInt, AfterValidator(_non_negative)]


# -- the schema ---------------------------------------------------------------------------------

@with_config(ConfigDict(extra="allow"))
class TensorSpec(TypedDict):
    """One graph input or output: ``name``, ``dtype``, ``shape`` (any JSON), more keys allowed."""

    name: Any
    dtype: Any
    shape: Any


@with_config(ConfigDict(extra="allow"))
class IOSpec(TypedDict):
    """The graph's interface; keys beyond these (``item_index_base``...) are kept as written."""

    inputs: Annotated[list[TensorSpec], Strict()]
    outputs: Annotated[list[TensorSpec], Strict()]
    max_seq_len: _Count
    n_items: _Count


@with_config(ConfigDict(extra="forbid"))
class Signing(TypedDict):
    """Who signs the artifact: ``{"method": ..., "key_id": ...}``."""

    method: SigningMethod
    key_id: Annotated[StrictStr, AfterValidator(_key_id)]


_CLOSED = ConfigDict(extra="forbid")
# Unknown keys in a file entry were always ignored (and dropped when re-written); kept so.
_FILE_ENTRY = ConfigDict(extra="ignore")


def _raising_manifest_error(cls: type[_T]) -> type[_T]:
    """Direct construction fails like parsing: ManifestError naming the field (positional
    arguments are named too). Validation inside a Manifest never calls ``__init__``."""
    init = cls.__init__
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @functools.wraps(init)
    def __init__(self: _T, *args: Any, **kwargs: Any) -> None:
        kwargs.update(zip(names, args, strict=False))
        try:
            init(self, **kwargs)
        except ValidationError as exc:
            raise ManifestError(_describe(exc)) from None

    setattr(cls, "__init__", __init__)  # noqa: B010 -- pydantic sets __init__ after the class body
    return cls


@_raising_manifest_error
@dataclass(frozen=True, config=_FILE_ENTRY)
class FileEntry:
    """One file of the artifact: its path relative to the directory, sha256 hex and size.

    Example:
        >>> FileEntry("model.onnx", "0" * 64, 3).size
        3
    """

    path: Annotated[StrictStr, AfterValidator(_relative_path)]
    sha256: Annotated[StrictStr, AfterValidator(_sha256_hex)]
    size: _Count


@_raising_manifest_error
@dataclass(frozen=True, kw_only=True, config=_CLOSED)
class Manifest:
    """The parsed, validated content of manifest.json (treat ``io``/``metrics`` as read-only).

    Every field is required (``parent`` and ``signing`` may be None: no parent, no key chosen
    yet) except ``pseudonym_key_id``: the fingerprint of the HMAC key the artifact's user ids
    are pseudonymised with (``security.pseudonym``), absent from artifacts that store clear
    ids (those exported before pseudonymisation, or holding no user data). It is left out of
    the JSON when None, so older manifests keep their exact bytes. ``build_manifest`` fills
    the fields in and ``from_json_bytes`` parses them.

    Example:
        >>> m = Manifest.from_json_bytes(open("art/manifest.json", "rb").read())  # doctest: +SKIP
        >>> m.io["max_seq_len"], m.signing["key_id"]  # doctest: +SKIP
        (50, '8c2e5bca4341914b')
    """

    format: ArtifactFormat
    version: _NonEmptyStr
    parent: _NonEmptyStr | None
    created_at: Annotated[StrictStr, AfterValidator(_utc_timestamp)]
    kind: Kind
    io: Annotated[IOSpec, AfterValidator(_plain_json)]
    metrics: dict[StrictStr, Annotated[float, PlainValidator(_finite_number)]]
    files: Annotated[tuple[FileEntry, ...], AfterValidator(_sorted_unique)]
    signing: Signing | None
    pseudonym_key_id: Annotated[StrictStr, AfterValidator(_pseudonym_key_id)] | None = None

    def to_json_bytes(self) -> bytes:
        """Canonical manifest.json bytes: sorted keys, indent 2, ASCII, trailing newline."""
        obj = dataclasses.asdict(self)
        if obj["pseudonym_key_id"] is None:  # optional: older manifests keep their bytes
            del obj["pseudonym_key_id"]
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)
        return (text + "\n").encode("ascii")

    @classmethod
    def from_json_bytes(cls, data: bytes) -> Manifest:
        """Parse and validate manifest.json bytes; raise ManifestError naming the bad field."""
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"expected UTF-8 JSON, found undecodable data ({exc})") from exc
        except RecursionError:
            raise ManifestError(f"expected JSON nested at most {_MAX_DEPTH} levels, found "
                                "nesting too deep to parse") from None
        if not isinstance(obj, dict):
            raise ManifestError(f"expected a JSON object, found {type(obj).__name__}")
        for key, value in obj.items():
            # Validation, messages and to_json_bytes recurse: refuse what would overflow them.
            if _deeper_than(value, _MAX_DEPTH - 1):
                raise ManifestError(f"{_field_name((key,))}: expected JSON nested at most "
                                    f"{_MAX_DEPTH} levels, found deeper")
        return _parse(obj)


_MANIFEST = TypeAdapter(Manifest)


def _parse(obj: dict[str, Any]) -> Manifest:
    try:
        return _MANIFEST.validate_python(obj)
    except ValidationError as exc:
        raise ManifestError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """``field: expected ..., found ...`` for the first few errors; a foreign format alone."""
    errors = exc.errors()
    # Another format explains every other difference, so it is the whole story.
    shown = [e for e in errors if e["loc"][:1] == ("format",)] or errors
    text = "; ".join(_describe_one(e) for e in shown[:_MAX_ERRORS_SHOWN])
    if len(shown) > _MAX_ERRORS_SHOWN:
        text += f"; and {len(shown) - _MAX_ERRORS_SHOWN} more"
    return text


def _describe_one(error: ErrorDetails) -> str:
    if error["type"] == "value_error":
        what = str(error.get("ctx", {}).get("error", error["msg"]))
    elif error["type"] in _UNKNOWN:
        what = "unknown field; was the manifest written by another tool or version?"
    elif error["type"] in _MISSING:
        what = "required field is missing; was the manifest written by another tool or version?"
    else:
        found = repr(error["input"])
        if len(found) > _MAX_INPUT_SHOWN:
            found = found[: _MAX_INPUT_SHOWN - 3] + "..."
        msg = error["msg"]
        expected = msg.removeprefix("Input should be ")
        what = f"expected {expected}" if expected != msg else msg[:1].lower() + msg[1:]
        what += f", found {found}"
    hint = _HINTS.get(str(error["loc"][0])) if error["loc"] else None
    return f"{_field_name(error['loc'])}: {what}" + (f"; {hint}" if hint else "")


def _deeper_than(value: object, levels: int) -> bool:
    """Whether lists and mappings nest in ``value`` more than ``levels`` deep (iteratively)."""
    level = [value]
    for _ in range(levels + 1):
        level = [child for v in level
                 for child in (v.values() if isinstance(v, dict) else v if isinstance(v, list)
                               else ())]
        if not level:
            return False
    return True


def _field_name(loc: tuple[int | str, ...]) -> str:
    """``("files", 0, "sha256")`` → ``files[0].sha256``; ``("metrics", "ndcg@10")`` →
    ``metrics['ndcg@10']``."""
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part.isidentifier():
            name += f".{part}" if name else part
        else:
            name += f"[{part!r}]"
    return name or "manifest"


# -- files --------------------------------------------------------------------------------------

def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Return ``(sha256_hex, size)`` of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def build_manifest(
    directory: str | os.PathLike[str],
    *,
    version: str,
    kind: str,
    io: Mapping[str, Any],
    metrics: Mapping[str, float],
    parent: str | None = None,
    created_at: str | None = None,
    signing: Mapping[str, object] | None = None,
    pseudonym_key_id: str | None = None,
) -> Manifest:
    """Hash every file under ``directory`` (except manifest.json, model.sig) into a Manifest.

    ``created_at`` defaults to now, UTC, to the second; ``pseudonym_key_id`` names the key the
    artifact's user ids are pseudonymised with (None: the artifact holds no pseudonyms).
    """
    root = Path(directory)
    if not root.is_dir():
        raise ManifestError(f"{root}: expected a directory holding the artifact files, found none")
    files, links = _walk(root)
    if links:
        # A link could point outside the artifact, where no digest protects it.
        raise ManifestError(
            f"{links[0]}: is a symbolic link; artifacts hold regular files only: "
            "replace it by a copy of its target"
        )
    entries = []
    for rel in files:
        sha256, size = hash_file(root / rel)
        entries.append({"path": rel, "sha256": sha256, "size": size})
    if created_at is None:
        created_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _parse({
        "format": ARTIFACT_FORMAT,
        "version": version,
        "parent": parent,
        "created_at": created_at,
        "kind": kind,
        "io": dict(io),
        "metrics": {name: _as_float(name, value) for name, value in metrics.items()},
        "files": entries,
        "signing": None if signing is None else dict(signing),
        "pseudonym_key_id": pseudonym_key_id,
    })


def write_manifest(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    """Write ``manifest`` as ``directory/manifest.json``, atomically."""
    atomic_write_bytes(Path(directory) / MANIFEST_FILE, manifest.to_json_bytes())


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``directory/manifest.json``; raise ManifestError if absent or invalid.

    This proves nothing about authenticity: a reader that loads files uses
    ``export.verify.verify_artifact``, which returns the same Manifest once it is proven.
    """
    path = Path(directory) / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(
            f"{path} not found: expected an artifact directory written by export; "
            "check the path or re-export"
        ) from exc
    try:
        return Manifest.from_json_bytes(data)
    except ManifestError as exc:
        raise ManifestError(
            f"{path}: {exc}; restore it from the store or re-export the artifact"
        ) from exc


def check_directory(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    """Raise ArtifactVerificationError naming the first file that ``manifest`` does not describe.

    Checks, cheapest first: no symbolic link, every listed file present with the listed size,
    no unlisted file, then every listed sha256.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ArtifactVerificationError(
            ".", "missing", f"{root}: expected an artifact directory, found none; check the path"
        )
    files, links = _walk(root)
    if links:
        raise ArtifactVerificationError(
            links[0],
            "unlisted",
            f"{links[0]}: is a symbolic link (expected regular files only, since a link can "
            "point where no digest protects it); remove it, or re-export the artifact",
        )
    present = set(files)
    for entry in manifest.files:
        if entry.path not in present:
            raise ArtifactVerificationError(
                entry.path,
                "missing",
                f"{entry.path}: listed in manifest.json but not found in {root}; the copy is "
                "incomplete: fetch the artifact again from the store, or re-export it",
            )
        size = (root / entry.path).stat().st_size
        if size != entry.size:
            raise ArtifactVerificationError(
                entry.path,
                "size-mismatch",
                f"{entry.path}: expected {entry.size} bytes (manifest.json), found {size}; the "
                "file is truncated or modified: fetch it again from the store, or re-export",
            )
    listed = {entry.path for entry in manifest.files}
    for rel in files:
        if rel not in listed:
            raise ArtifactVerificationError(
                rel,
                "unlisted",
                f"{rel}: found in {root} but not listed in manifest.json (expected only the "
                "listed files, manifest.json and model.sig); remove it or re-export the artifact",
            )
    for entry in manifest.files:
        sha256, _ = hash_file(root / entry.path)
        if sha256 != entry.sha256:
            raise ArtifactVerificationError(
                entry.path,
                "digest-mismatch",
                f"{entry.path}: expected sha256 {entry.sha256} (manifest.json), found {sha256}; "
                "the file was modified or corrupted: fetch it again from the store, or re-export",
            )


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """Sorted relative POSIX paths under ``root``: (regular files to list, symbolic links)."""
    files, links = [], []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            links.append(rel)
        elif path.is_file() and rel not in _UNLISTED:
            files.append(rel)
    return sorted(files), sorted(links)


def _as_float(name: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]  # numpy scalars and bools included
    except (TypeError, ValueError):
        raise ManifestError(f"metrics[{name!r}]: expected a number, found {value!r}") from None
