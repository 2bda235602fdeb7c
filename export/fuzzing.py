"""Fuzzer of manifest.json and artifact verification: mutated manifest documents and bytes,
random bytes, deep nesting, and mutated files of a signed artifact.

The contract it checks: ``Manifest.from_json_bytes`` returns a Manifest (that serialises
and parses back to itself) or raises ManifestError naming the field; ``verify_artifact`` of
a mutated artifact raises ArtifactVerificationError (or returns, if nothing changed) and
never writes a byte of the directory it checks. Needs the dev extra (hypothesis).

Example:
    >>> fuzz_manifest(examples=50, seed=1).failures  # doctest: +SKIP
    ()
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.errors import ArtifactVerificationError, ManifestError
from export.manifest import MANIFEST_FILE, Manifest, build_manifest, write_manifest
from export.signing import SIGNING_METHOD, generate_signing_key, sign_artifact
from export.verify import verify_artifact
from security.fuzzing import FuzzResult, TreePath, mutated_trees, run_property

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["ManifestCase", "check_manifest_case", "fuzz_manifest", "manifest_cases",
           "sample_artifact", "tree_digest"]

# "<field>: <what>": a name, an index or a quoted key (``metrics['a b']``), never "expected"
_NAMES_FIELD = re.compile(r"^(?!expected )(\w|\[).*?: \S")
_ARTIFACT_FILES = {"model.onnx": 2048, "items.parquet": 300, "search/vocab.txt": 40}


@dataclass(frozen=True)
class ManifestCase:
    """manifest.json bytes to try, the field they changed (None: not a JSON-object edit),
    and, for verification cases, one data file to overwrite too (path, bytes)."""

    data: bytes
    path: TreePath | None
    kind: str
    verify: bool = False
    data_file: tuple[str, bytes] | None = None


def sample_artifact(directory: Path) -> tuple[Path, Path]:
    """A small signed artifact (random bytes as files, a real manifest and signature) in
    ``directory/artifact``; returns it and its public key."""
    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    key_id = generate_signing_key(keys / "signing.pem", keys / "signing.pub", overwrite=True)
    art = directory / "artifact"
    for name, size in _ARTIFACT_FILES.items():
        (art / name).parent.mkdir(parents=True, exist_ok=True)
        (art / name).write_bytes(os.urandom(size))
    io = {"inputs": [{"name": "item_ids", "dtype": "int64", "shape": ["batch", 50]}],
          "outputs": [{"name": "scores", "dtype": "float32", "shape": ["batch", 101]}],
          "max_seq_len": 50, "n_items": 100, "item_index_base": 1}
    write_manifest(art, build_manifest(art, version="v1", kind="sequential-recommender", io=io,
                                       metrics={"ndcg@10": 0.4}, parent="v0",
                                       signing={"method": SIGNING_METHOD, "key_id": key_id}))
    sign_artifact(art, keys / "signing.pem")
    return art, keys / "signing.pub"


def tree_digest(directory: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``directory``: sha256 (or the link target) and mode, to prove that
    nothing was written."""
    out: dict[str, tuple[str, int]] = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink():
            out[rel] = (f"-> {os.readlink(path)}", st.st_mode)
        elif path.is_file():
            out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode)
        else:
            out[rel] = ("dir", st.st_mode)
    return out


def check_manifest_case(case: ManifestCase, original: Path, public_key: Path,
                        scratch: Path) -> tuple[str, str]:
    """Parse (and, for verification cases, verify a copy of ``original`` carrying) the case's
    manifest bytes; raise AssertionError if a contract is broken. Returns the case's kind and
    outcome (``ok``, ``refused``; verified ones ``verified`` or ``refused:<reason>``)."""
    try:
        manifest = Manifest.from_json_bytes(case.data)
    except ManifestError as exc:
        if case.path is not None and not _NAMES_FIELD.match(str(exc)):
            raise AssertionError(f"editing {case.path} was refused without naming a field: "
                                 f"{str(exc)[:300]}") from None
        outcome = "refused"
    else:
        if Manifest.from_json_bytes(manifest.to_json_bytes()) != manifest:
            raise AssertionError("an accepted manifest does not survive to_json_bytes")
        outcome = "ok"
    if case.verify:
        outcome = _check_verify(case, original, public_key, scratch)
    return case.kind, outcome


def _check_verify(case: ManifestCase, original: Path, public_key: Path, scratch: Path) -> str:
    art = scratch / "artifact"
    if art.exists():
        shutil.rmtree(art)
    shutil.copytree(original, art)
    (art / MANIFEST_FILE).write_bytes(case.data)
    if case.data_file is not None:
        name, content = case.data_file
        (art / name).parent.mkdir(parents=True, exist_ok=True)
        (art / name).write_bytes(content)
    before = tree_digest(art)
    unchanged = before == tree_digest(original)
    try:
        verify_artifact(art, public_key)
        outcome = "verified"
    except ArtifactVerificationError as exc:
        if not exc.path or not str(exc).startswith(exc.path):
            raise AssertionError(f"a refusal must start with the file it names ({exc.path!r}): "
                                 f"{str(exc)[:200]}") from None
        outcome = f"refused:{exc.reason}"
    after = tree_digest(art)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        raise AssertionError(f"verify_artifact changed the artifact it checked: {changed}")
    if outcome == "verified" and not unchanged:
        raise AssertionError("a changed artifact verified")
    return outcome


def manifest_cases(document: dict[str, Any],
                   manifest_bytes: bytes) -> SearchStrategy[ManifestCase]:
    """A hypothesis strategy of ``ManifestCase``: field edits of ``document`` (the parsed
    manifest), byte edits of ``manifest_bytes``, random bytes, deep nesting, and some of them
    verified in a copy of the artifact, a data file changed too."""
    from hypothesis import strategies as st

    def edited(found: tuple[Any, TreePath, str], indent: int | None, nan: bool) -> ManifestCase:
        doc, path, kind = found
        text = json.dumps(doc, indent=indent, allow_nan=True, ensure_ascii=False)
        if not nan and ("NaN" in text or "Infinity" in text):
            text = text.replace("-Infinity", "-1e999").replace("Infinity", "1e999")
        try:
            return ManifestCase(text.encode(), path, f"field:{kind}")
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8, so no field to name
            return ManifestCase(text.encode("utf-8", "surrogatepass"), None, f"field:{kind}")

    fields = st.builds(edited, mutated_trees([document]), st.sampled_from([None, 2]),
                       st.booleans())

    @st.composite
    def byte_edits(draw: Any) -> ManifestCase:
        data = bytearray(manifest_bytes)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
            if op == "flip" and at < len(data):
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif op == "delete":
                del data[at:at + draw(st.integers(1, 16))]
            else:
                del data[at:]
        return ManifestCase(bytes(data), None, "bytes")

    def nested(depth: int, where: str) -> ManifestCase:
        deep = "[" * depth + "]" * depth
        if where == "top":
            return ManifestCase(deep.encode(), None, "nested")
        doc = json.dumps({**document, "io": {**document["io"], "extra": "@"}})
        return ManifestCase(doc.replace('"@"', deep).encode(), None, "nested")

    deep = st.builds(nested, st.sampled_from([10, 200, 400, 900, 5000, 100_000]),
                     st.sampled_from(["top", "io"]))
    random_bytes = st.binary(max_size=300).map(lambda b: ManifestCase(b, None, "random"))
    unchanged = st.just(ManifestCase(manifest_bytes, None, "unchanged"))
    parsed = st.one_of(fields, fields, byte_edits(), random_bytes, deep, unchanged)

    @st.composite
    def cases(draw: Any) -> ManifestCase:
        case = draw(parsed)
        if draw(st.integers(0, 3)) > 0:
            return case
        data_file = draw(st.none() | st.tuples(
            st.sampled_from([*_ARTIFACT_FILES, "unlisted.bin", "search/new.txt"]),
            st.binary(max_size=64)))
        return ManifestCase(case.data, case.path, case.kind, True, data_file)

    return cases()


def fuzz_manifest(*, examples: int, seed: int | None = None, artifact: Path | None = None,
                  public_key: Path | None = None) -> FuzzResult:
    """Run ``examples`` cases of ``manifest_cases`` against ``artifact`` (default: a fresh
    ``sample_artifact``); the artifact itself is only read (its copies are mutated)."""
    with tempfile.TemporaryDirectory(prefix="recdrill-fuzz-manifest-") as tmp:
        scratch = Path(tmp)
        if artifact is None or public_key is None:
            artifact, public_key = sample_artifact(scratch / "sample")
        data = (artifact / MANIFEST_FILE).read_bytes()
        original, key = artifact, public_key
        before = tree_digest(original)
        result = run_property(
            "manifest", manifest_cases(json.loads(data), data),
            lambda case: check_manifest_case(case, original, key, scratch), examples=examples,
            seed=seed)
        if tree_digest(original) != before:
            raise AssertionError(f"{original} changed while it was fuzzed")
        return result
