"""``python -m recdrill.fuzz``: the summary it writes, its exit codes, and the pinned public
surface of the fuzz modules."""

from __future__ import annotations

import doctest
import importlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recdrill.fuzz import EXIT_CONFIG, EXIT_OK, app


def test_a_short_run_writes_the_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--examples", "20", "--out", str(tmp_path), "--seed", "7",
                                      "--target", "scenario", "--target", "manifest"])
    assert result.exit_code == EXIT_OK, result.output
    summary = json.loads((tmp_path / "fuzz.json").read_text())
    assert [t["target"] for t in summary["targets"]] == ["scenario", "manifest"]
    assert summary["total_cases"] == sum(t["total_cases"] for t in summary["targets"]) >= 40
    assert summary["failures"] == 0 and {t["seed"] for t in summary["targets"]} == {7}


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "http"], "give --artifact"),
    (["--target", "nope"], "['nope'] unknown"),
    (["--examples", "0", "--target", "scenario"], "expected at least 1"),
    (["--seed", "soon", "--target", "scenario"], "expected an integer or 'random'"),
])
def test_bad_configuration_exits_2_saying_what_to_do(tmp_path: Path, args: list[str],
                                                     message: str) -> None:
    result = CliRunner().invoke(app, ["--out", str(tmp_path), *args])
    assert result.exit_code == EXIT_CONFIG and message in result.output, result.output


@pytest.mark.parametrize(("module", "names"), [
    ("security.fuzzing", ["EXAMPLES_ENV", "SEED_ENV", "SUITE_SEED", "FuzzFailure", "FuzzResult", "TreePath",
                          "examples_from_env", "get_at", "hostile_values", "mutated_trees",
                          "run_property", "seed_from_env", "tree_paths"]),
    ("serving.fuzzing", ["GRPC_ALLOWED", "GRPC_METHODS", "KnownIds", "fuzz_grpc", "fuzz_http",
                         "grpc_cases", "known_ids"]),
    ("drills.fuzzing", ["Mutation", "check_scenario_text", "fuzz_scenarios", "scenario_cases"]),
    ("export.fuzzing", ["ManifestCase", "check_manifest_case", "fuzz_manifest",
                        "manifest_cases", "sample_artifact", "tree_digest"]),
    ("recdrill.fuzz", ["EXIT_CONFIG", "EXIT_FOUND", "EXIT_OK", "TARGETS", "FuzzConfig", "app",
                       "main", "run"]),
])
def test_public_surface_is_pinned(module: str, names: list[str]) -> None:
    assert importlib.import_module(module).__all__ == names


@pytest.mark.parametrize("module", ["security.fuzzing", "drills.fuzzing", "export.fuzzing",
                                    "serving.fuzzing", "recdrill.fuzz"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_suite_replays_its_seed_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from security.fuzzing import SEED_ENV, seed_from_env

    monkeypatch.delenv(SEED_ENV, raising=False)
    assert seed_from_env(5) == 5 and seed_from_env() is None
    monkeypatch.setenv(SEED_ENV, "random")
    assert seed_from_env(5) is None
    monkeypatch.setenv(SEED_ENV, "12")
    assert seed_from_env(5) == 12
