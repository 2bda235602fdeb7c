"""drills.catalog: the shipped scenarios load, are named by title, and cover every fault kind."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from drills.catalog import SCENARIO_DIR, catalog, describe, resolve
from drills.errors import ScenarioError
from drills.loader import load_scenario
from drills.scenario import FAULT_KINDS

SHIPPED = ["bad-model-rollout", "checkpoint-corruption", "checkpoint-delete", "checkpoint-tamper",
           "controller-kill", "frontdoor-grpc", "frontdoor-kill", "game-day", "head-kill",
           "node-kill", "overload", "primary-store-loss", "raylet-kill", "region-failback",
           "region-loss", "region-loss-sync", "replica-kill", "replica-stall",
           "search-regression", "search-replica-stall"]
MINIMAL = """\
title: {title}
load: {{rate_rps: 10, duration_s: 20}}
method: [{{fault: kill-replica, at_s: 5}}]
steady_state_hypothesis: {{slos: [{{kind: success_ratio, min: 0.9}}]}}
"""


def test_all_is_pinned() -> None:
    assert importlib.import_module("drills.catalog").__all__ == ["SCENARIO_DIR", "catalog", "describe", "resolve"]


def test_catalog_lists_the_shipped_scenarios_sorted() -> None:
    assert list(catalog()) == SHIPPED
    assert all(path.parent == SCENARIO_DIR for path in catalog().values())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_loads_and_is_named_by_its_title(name: str) -> None:
    scenario = load_scenario(catalog()[name])
    assert scenario.title == name
    assert len(scenario.description) > 40, "say what the drill proves and what it targets"


def test_every_fault_kind_is_drilled_by_a_shipped_scenario() -> None:
    used = {fault.fault for path in catalog().values() for fault in load_scenario(path).method}
    assert set(FAULT_KINDS) - used == set()


def test_every_checkpoint_mode_is_drilled() -> None:
    modes = {fault.mode for path in catalog().values() for fault in load_scenario(path).method
             if fault.fault == "corrupt-checkpoint"}
    assert modes >= {"corrupt", "tamper", "delete"}


@pytest.mark.parametrize("spelling", ["node-kill", "node-kill.yaml"])
def test_resolve_a_catalog_name(spelling: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no local file shadows the name
    assert resolve(spelling) == SCENARIO_DIR / "node-kill.yaml"


def test_resolve_an_existing_path_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(MINIMAL.format(title="mine"), encoding="utf-8")
    assert resolve(str(path)) == path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "node-kill.yaml").write_text(MINIMAL.format(title="local"), encoding="utf-8")
    assert resolve("node-kill.yaml") == Path("node-kill.yaml")
    assert resolve("node-kill") == SCENARIO_DIR / "node-kill.yaml"


def test_resolve_unknown_lists_the_catalog(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenarioError) as info:
        resolve("node-kil")
    message = str(info.value)
    assert message.startswith("'node-kil' is neither a scenario file nor a catalog name; "
                              "did you mean 'node-kill'? catalog: bad-model-rollout, ")
    assert all(name in message for name in SHIPPED)


def test_resolve_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="neither a scenario file nor a catalog name"):
        resolve(str(tmp_path / "gone.yaml"))


def test_describe_summarises_every_scenario() -> None:
    summaries = describe()
    assert [s["name"] for s in summaries] == SHIPPED
    game_day = next(s for s in summaries if s["name"] == "game-day")
    assert game_day["faults"] == ["kill-replica", "kill-controller", "stall-replica",
                                  "corrupt-checkpoint", "delete-primary-store", "kill-node"]
    assert game_day["load"] == {"rate_rps": 200, "rate_fraction": None, "protocol": "http",
                                "client": "plain", "duration_s": 95}
    assert game_day["path"] == os.fspath(SCENARIO_DIR / "game-day.yaml")
    assert game_day["title"] == "game-day" and "node" in game_day["description"]


def test_other_directories_work_and_broken_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(MINIMAL.format(title="b"), encoding="utf-8")
    (tmp_path / "a.yaml").write_text(MINIMAL.format(title="a"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a scenario", encoding="utf-8")
    assert list(catalog(tmp_path)) == ["a", "b"]
    assert [s["name"] for s in describe(tmp_path)] == ["a", "b"]
    (tmp_path / "c.yaml").write_text("title: c\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"c\.yaml:1:1: load: field required"):
        describe(tmp_path)
