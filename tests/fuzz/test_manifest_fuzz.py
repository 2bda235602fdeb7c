"""Hypothesis against manifest.json and verification: mutated manifests (fields and bytes),
random and deeply nested JSON parse into a Manifest or raise ManifestError naming the field;
verifying a mutated artifact refuses it, naming the file, and never writes to it. Then the
inputs that broke it once, pinned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from export.errors import ArtifactVerificationError, ManifestError
from export.fuzzing import fuzz_manifest, sample_artifact, tree_digest
from export.manifest import MANIFEST_FILE, Manifest
from export.verify import verify_artifact
from security.fuzzing import SUITE_SEED, FuzzResult, examples_from_env, seed_from_env

EXAMPLES = examples_from_env(800)  # about 8 s here


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return sample_artifact(tmp_path_factory.mktemp("manifest-fuzz"))


def test_manifest_parser_and_verify_keep_their_contract(
        artifact: tuple[Path, Path], fuzz_report: list[FuzzResult]) -> None:
    before = tree_digest(artifact[0])
    result = fuzz_manifest(examples=EXAMPLES, seed=seed_from_env(SUITE_SEED), artifact=artifact[0],
                           public_key=artifact[1])
    fuzz_report.append(result)
    print(result.summary_line())
    assert not result.failures, "\n\n".join(f"{f.message}\n{f.reproduce}"
                                            for f in result.failures)
    assert {"ok", "refused", "refused:malformed", "verified"} <= set(result.outcomes)
    assert tree_digest(artifact[0]) == before
    verify_artifact(artifact[0], artifact[1])  # the original still verifies


@pytest.mark.parametrize(("data", "expected"), [
    (b"[" * 100_000, "expected JSON nested at most 32 levels, found nesting too deep"),
    (b'{"io": ' + b"[" * 900 + b"]" * 900 + b"}", "io: expected JSON nested at most 32"),
    (b'{"files": [' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"]}",
     "files: expected JSON nested at most 32"),
], ids=["top", "io", "files"])
def test_deep_nesting_is_a_manifest_error_naming_the_field(data: bytes, expected: str) -> None:
    """Found by the fuzzer: RecursionError escaped from_json_bytes, and an io nested 500 deep
    parsed into a Manifest whose to_json_bytes then overflowed."""
    with pytest.raises(ManifestError, match="^" + expected.replace("[", r"\[")):
        Manifest.from_json_bytes(data)


def test_nesting_within_the_limit_still_parses(artifact: tuple[Path, Path]) -> None:
    doc = json.loads((artifact[0] / MANIFEST_FILE).read_bytes())
    doc["io"]["extra"] = json.loads("[" * 20 + "]" * 20)
    manifest = Manifest.from_json_bytes(json.dumps(doc).encode())
    assert Manifest.from_json_bytes(manifest.to_json_bytes()) == manifest


def test_verify_of_a_deeply_nested_manifest_refuses_it_without_writing(
        artifact: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(artifact[0], copy)
    (copy / MANIFEST_FILE).write_bytes(b"[" * 100_000)
    before = tree_digest(copy)
    with pytest.raises(ArtifactVerificationError) as info:
        verify_artifact(copy, artifact[1])
    assert (info.value.path, info.value.reason) == (MANIFEST_FILE, "malformed")
    assert tree_digest(copy) == before
