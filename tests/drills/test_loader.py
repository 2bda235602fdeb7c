"""drills.loader: valid YAML becomes a Scenario; every error names file, line, column, field."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from drills.errors import ScenarioError
from drills.loader import load_scenario, parse_scenario
from drills.scenario import Scenario

# line numbers below are 1-based lines of this text
VALID = """\
title: t
load:
  rate_rps: 50
  duration_s: 30
method:
  - fault: kill-replica
    at_s: 8
    target:
      blast_radius: {percent: 50}
  - fault: kill-node
    name: node
    at_s: 15
steady_state_hypothesis:
  slos:
    - kind: success_ratio
      min: 0.999
    - {kind: p99_ms, max_ratio: 2.0, phases: [node]}
"""


def _edit(**lines: str) -> str:
    """VALID with line ``_N`` replaced (``_7="    at_s: soon"``)."""
    out = VALID.splitlines()
    for key, text in lines.items():
        out[int(key.removeprefix("_")) - 1] = text
    return "\n".join(out) + "\n"


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    return str(info.value)


def test_all_is_pinned() -> None:
    assert importlib.import_module("drills.loader").__all__ == ["load_scenario", "parse_scenario"]


def test_valid_scenario_parses_to_the_same_model_as_its_data() -> None:
    scenario = parse_scenario(VALID)
    assert scenario == Scenario.model_validate(yaml.safe_load(VALID))
    assert scenario.fault_names() == ["kill-replica", "node"]
    assert scenario.method[0].target.blast_radius.percent == 50


def test_dumped_scenario_round_trips() -> None:
    scenario = parse_scenario(VALID)
    assert parse_scenario(yaml.safe_dump(scenario.model_dump(mode="json"))) == scenario


def test_load_scenario_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(VALID, encoding="utf-8")
    assert load_scenario(path) == parse_scenario(VALID)
    assert load_scenario(str(path)).title == "t"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(_edit(_7="    at_s: soon"),
                 "s.yaml:7:5: method[0].at_s: Input should be a valid number, unable to parse "
                 "string as a number (found 'soon')", id="wrong-type"),
    pytest.param(_edit(_7="    at_s: -3"),
                 "s.yaml:7:5: method[0].at_s: Input should be greater than or equal to 0 "
                 "(found -3)", id="below-range"),
    pytest.param(_edit(_9="      blast_radius: {percent: 150}"),
                 "s.yaml:9:22: method[0].target.blast_radius.percent: Input should be less than "
                 "or equal to 100 (found 150)", id="above-range"),
    pytest.param(_edit(_11="    nmae: node"),
                 "s.yaml:11:5: method[1].nmae: unknown field 'nmae'; expected one of: at_s, "
                 "duration_s, factor, fault, mode, name, target", id="unknown-field"),
    pytest.param(_edit(_16="      min: 0.999\n      floor: 0.9"),
                 "s.yaml:17:7: steady_state_hypothesis.slos[0].floor: unknown field 'floor'; "
                 "expected one of: kind, min, name, phases", id="unknown-field-in-slo"),
    pytest.param(_edit(_4="  protocol: http"),
                 "s.yaml:2:1: load.duration_s: field required", id="missing-field"),
    pytest.param(_edit(_1="description: no title"),
                 "s.yaml:1:1: title: field required", id="missing-top-field"),
    pytest.param(_edit(_10="  - fault: kill-everything"),
                 "s.yaml:10:5: method[1].fault: fault 'kill-everything' is unknown; expected one "
                 "of ['bad-model', ", id="unknown-fault-kind"),
    pytest.param(_edit(_17="    - {kind: p99_ms, max_ratio: 2.0, phases: [nodes]}"),
                 "s.yaml:17:47: steady_state_hypothesis.slos[1].phases[0]: SLO p99_ms names "
                 "phase 'nodes'; expected one of ['baseline', 'faults', 'kill-replica', 'node', "
                 "'recovery', 'whole']", id="bad-phase-name"),
    pytest.param(_edit(_12="    at_s: 30"),
                 "s.yaml:12:5: method[1].at_s: fault kill-node at_s=30.0 + duration_s=10.0 runs "
                 "past the end of the load (duration_s=30.0)", id="fault-after-load"),
    pytest.param(_edit(_7="    at_s: 2"),
                 "s.yaml:7:5: method[0].at_s: the first fault at_s=2.0 leaves under 3 s of "
                 "baseline", id="short-baseline"),
    pytest.param(_edit(_17="    - {kind: p99_ms, phases: [node]}"),
                 "s.yaml:17:7: steady_state_hypothesis.slos[1]: give max_ms, max_ratio or both",
                 id="whole-object-error"),
    pytest.param(_edit(_3="  rate_rps: 50\n  rate_fraction: 0.5"),
                 "s.yaml:2:1: load: give exactly one of rate_rps or rate_fraction",
                 id="whole-field-object-error"),
    pytest.param(_edit(_15="    - kind: success"),
                 "s.yaml:15:7: steady_state_hypothesis.slos[0].kind: unknown kind; expected one "
                 "of success_ratio, p99_ms, ndcg10, search_ndcg10, degraded_share, recovery_s, "
                 "fact (found 'success')", id="unknown-slo-kind"),
    pytest.param(_edit(_15="    - name: ok"),
                 "s.yaml:15:7: steady_state_hypothesis.slos[0].kind: field required; one of "
                 "success_ratio, p99_ms", id="missing-slo-kind"),
    pytest.param(_edit(_16="      min: [1]"),
                 "s.yaml:16:7: steady_state_hypothesis.slos[0].min: Input should be a valid "
                 "number (found a list)", id="collection-for-scalar"),
    pytest.param(_edit(_5="method: []", _6="", _7="", _8="", _9="", _10="", _11="", _12=""),
                 "s.yaml:5:1: method: Tuple should have at least 1 item after validation, not 0",
                 id="empty-method"),
    pytest.param(VALID + "title: u\n",
                 "s.yaml:18:1: title: duplicate key 'title' (first at line 1); keep one",
                 id="duplicate-key"),
])
def test_error_names_line_column_field_and_expectation(text: str, expected: str) -> None:
    assert _error(text).startswith(expected)


def test_error_in_an_slo_whose_field_is_named_like_its_kind() -> None:
    text = _edit(_16="      min: 0.999\n    - {kind: fact, fact: [x], max: 1}")
    assert _error(text) == ("s.yaml:17:20: steady_state_hypothesis.slos[1].fact: Input should be "
                            "a valid string (found a list)")


def test_union_members_give_one_line() -> None:
    text = _edit(_16="      min: 0.999\n    - {kind: fact, fact: x, equals: [1]}")
    assert _error(text) == ("s.yaml:17:29: steady_state_hypothesis.slos[1].equals: Input should "
                            "be a valid boolean or Input should be a valid integer or Input should "
                            "be a valid number or Input should be a valid string (found a list)")


def test_merge_keys_are_not_duplicates_and_errors_point_at_the_override() -> None:
    text = _edit(_6="  - &kill {fault: kill-replica, at_s: 8, target: {select: first}}", _7="",
                 _8="", _9="", _10="  - <<: *kill", _12="    at_s: -1")
    assert _error(text) == ("s.yaml:12:5: method[1].at_s: Input should be greater than or equal "
                            "to 0 (found -1)")
    scenario = parse_scenario(text.replace("at_s: -1", "at_s: 15"))
    assert scenario.method[1].name == "node" and scenario.method[1].target.select == "first"


def test_items_lost_to_errors_do_not_also_report_an_empty_tuple() -> None:
    message = _error(_edit(_6="  - fault: nope", _10="  - fault: nada"))
    assert "at least 1 item" not in message
    assert len(message.splitlines()) == 2


def test_several_errors_are_all_reported_in_line_order() -> None:
    message = _error(_edit(_3="  rate_rps: many", _7="    at_s: -3", _16="      min: 2"))
    assert [line.split(": ")[0:2] for line in message.splitlines()] == [
        ["s.yaml:3:3", "load.rate_rps"],
        ["s.yaml:7:5", "method[0].at_s"],
        ["s.yaml:16:7", "steady_state_hypothesis.slos[0].min"],
    ]


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("title: t\nload: {rate_rps: 5\nmethod: []\n",
                 "s.yaml:3:7: YAML syntax error: expected ',' or '}', but got ':' (while parsing "
                 "a flow mapping started at line 2, column 7)", id="unclosed-flow-mapping"),
    pytest.param("title: t\nload:\n  rate_rps: 50\n  at_s: 8: 9\n",
                 "s.yaml:4:10: YAML syntax error: mapping values are not allowed here",
                 id="mapping-in-scalar"),
    pytest.param("title: t\n---\ntitle: u\n",
                 "s.yaml:2:1: YAML syntax error: but found another document", id="two-documents"),
    pytest.param("- fault: kill-node\n",
                 "s.yaml:1:1: the top level must be a mapping of scenario fields (title, load, "
                 "method, steady_state_hypothesis, ...); found a list", id="top-level-list"),
    pytest.param("just words\n", "s.yaml:1:1: the top level must be a mapping", id="scalar"),
    pytest.param("", "s.yaml: the file is empty (or only comments); expected a mapping",
                 id="empty"),
    pytest.param("# nothing yet\n", "s.yaml: the file is empty", id="only-comments"),
])
def test_malformed_documents(text: str, expected: str) -> None:
    assert _error(text).startswith(expected)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError, match="no such scenario file") as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: ")


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(_edit(_7="    at_s: -3"), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:7:5: method[0].at_s: ")


def test_a_directory_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(tmp_path)
