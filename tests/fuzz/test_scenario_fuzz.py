"""Hypothesis against the scenario parser: random YAML and mutated shipped scenarios either
parse into a valid Scenario or raise ScenarioError naming file, line, column and field;
never another exception. Then the inputs that broke it once, pinned."""

from __future__ import annotations

from pathlib import Path

import pytest

from drills.errors import ScenarioError
from drills.fuzzing import Mutation, _check_refusal, check_scenario_text, fuzz_scenarios
from drills.loader import load_scenario, parse_scenario
from security.fuzzing import SUITE_SEED, FuzzResult, examples_from_env, seed_from_env

EXAMPLES = examples_from_env(500)  # about 10 s here


def test_scenario_parser_returns_a_scenario_or_a_scenario_error(
        fuzz_report: list[FuzzResult]) -> None:
    result = fuzz_scenarios(examples=EXAMPLES, seed=seed_from_env(SUITE_SEED))
    fuzz_report.append(result)
    print(result.summary_line())
    assert not result.failures, "\n\n".join(f"{f.message}\n{f.reproduce}"
                                            for f in result.failures)
    assert {"mutation:delete", "mutation:replace", "text", "file"} <= set(result.cases)
    assert result.outcomes["ok"] and result.outcomes["refused"]  # not everything is refused


def _refusal(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    return str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("\x1f", "s.yaml:1:1: YAML error: character #x001f is not allowed in YAML"),
    ("title: t\nload: a\x00", "s.yaml:2:8: YAML error: character #x0000 is not allowed"),
    ("title: t\nload: " + "[" * 2000 + "]" * 2000, "s.yaml: YAML nested too deeply to read"),
    ("title: t\nload: " + "{a: " * 600 + "b" + "}" * 600, "s.yaml: YAML nested too deeply"),
], ids=["control-char", "nul", "deep-list", "deep-mapping"])
def test_unreadable_yaml_is_a_scenario_error(text: str, expected: str) -> None:
    """Found by the fuzzer: a ReaderError and a RecursionError escaped the loader."""
    assert _refusal(text).startswith(expected)


@pytest.mark.parametrize(("key", "shown"), [("\x1e", r"'\x1e'"), (" ", "' '"),
                                            ("a\u2028b", r"'a\u2028b'"), ("", "''")])
def test_a_key_with_line_breaks_or_blanks_is_quoted(key: str, shown: str) -> None:
    """Found by the fuzzer: a key holding a line separator split one problem over two lines."""
    lines = _refusal(f'title: t\n"{key}": 1\n'.replace("\u2028", "\\u2028")
                     .replace("\x1e", "\\x1e")).splitlines()
    assert any(line.startswith(f"s.yaml:2:1: [{shown}]: unknown field {shown};")
               for line in lines), lines


def test_an_unreadable_file_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"title: \xff\xfe")
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(path)


def test_the_oracle_accepts_field_errors_and_catches_the_rest(tmp_path: Path) -> None:
    """The fuzzer's own oracle: a refusal naming fields passes, one naming none does not."""
    case = Mutation("title: t\n", ("load",), "mutation:delete")
    assert check_scenario_text(case, tmp_path) == ("mutation:delete", "refused")
    with pytest.raises(AssertionError, match="field"):
        _check_refusal(case, "fuzz.yaml:1:1 something went wrong")
