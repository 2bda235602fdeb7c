"""Fuzzer of the scenario parser (``drills.loader``): random YAML documents, and mutations of
the shipped scenarios (keys deleted, types changed, numbers out of range, unknown fault kinds,
huge or negative times, unicode), as text and as files.

The contract it checks: ``parse_scenario`` / ``load_scenario`` return a valid Scenario or
raise ScenarioError whose every line is ``source:line:column: field: what was expected``;
never another exception; a refused mutation (well-formed YAML) names a field on every line.
Needs the dev extra (hypothesis).

Example:
    >>> fuzz_scenarios(examples=50, seed=1).failures  # doctest: +SKIP
    ()
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from drills.catalog import SCENARIO_DIR
from drills.errors import ScenarioError
from drills.loader import load_scenario, parse_scenario
from drills.scenario import FAULT_KINDS, Scenario
from security.fuzzing import FuzzResult, TreePath, hostile_values, mutated_trees, run_property

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["Mutation", "check_scenario_text", "fuzz_scenarios", "scenario_cases"]

SOURCE = "fuzz.yaml"
_LINE = re.compile(rf"^{re.escape(SOURCE)}(:\d+:\d+)?: .")
# a refused mutation (well-formed YAML, a mapping) names a field on every line
_FIELD_LINE = re.compile(rf"^{re.escape(SOURCE)}:\d+:\d+: \S[^\n]*?: .")


@dataclass(frozen=True)
class Mutation:
    """One fuzz case: the YAML text (or file bytes) and the field path it changed, if one."""

    text: str | bytes
    path: TreePath | None = None
    kind: str = "random"


def check_scenario_text(case: Mutation, scratch: Path) -> tuple[str, str]:
    """Parse one case; raise AssertionError if the parser broke its contract. Returns the
    case's kind (``text``, ``mutation:<edit>``, ``file``...) and ``ok`` or ``refused``."""
    try:
        if isinstance(case.text, bytes):
            target = scratch / SOURCE
            target.write_bytes(case.text)
            scenario = load_scenario(target)
        else:
            scenario = parse_scenario(case.text, SOURCE)
    except ScenarioError as exc:
        _check_refusal(case, str(exc))
        return case.kind, "refused"
    _check_valid(scenario)
    return case.kind, "ok"


def _check_refusal(case: Mutation, message: str) -> None:
    lines = message.splitlines()
    if isinstance(case.text, bytes):  # load_scenario names the file by its path
        lines = [re.sub(r"^.*?fuzz\.yaml", SOURCE, line, count=1) for line in lines]
    form = _LINE if case.path is None else _FIELD_LINE
    bad = [line for line in lines if not form.match(line)]
    if not lines or bad:
        expected = "line:col: field: ..." if case.path else "[line:col:] ..."
        raise AssertionError(f"ScenarioError lines must be '{SOURCE}:{expected}', found "
                             f"{bad[:2] or message!r}")


def _check_valid(scenario: Scenario) -> None:
    """What the runner relies on, for a scenario the parser accepted."""
    assert isinstance(scenario, Scenario)
    assert all(f.fault in FAULT_KINDS for f in scenario.method)
    assert all(math.isfinite(f.at_s) and 0 <= f.at_s for f in scenario.method), scenario.method
    assert all(f.end_s <= scenario.load.duration_s for f in scenario.method)
    assert Scenario.model_validate(scenario.model_dump()) == scenario


# -- strategies ---------------------------------------------------------------------------------

def _shipped() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text(encoding="utf-8"))
            for p in sorted(SCENARIO_DIR.glob("*.yaml"))]


def scenario_cases() -> SearchStrategy[Mutation]:
    """A hypothesis strategy of ``Mutation``: mutated shipped scenarios (generic edits, and
    unknown fault kinds, out-of-range numbers, huge or negative ``at_s``), as YAML text or as
    file bytes; random YAML text, documents and bytes; deeply nested and aliased YAML."""
    from hypothesis import strategies as st

    shipped = _shipped()

    @st.composite
    def faults(draw: Any) -> tuple[Any, TreePath, str]:
        doc = draw(st.sampled_from(shipped))
        doc = {**doc, "method": [dict(f) for f in doc["method"]]}
        i = draw(st.integers(0, len(doc["method"]) - 1))
        kind = draw(st.sampled_from(["fault-kind", "at-s", "out-of-range"]))
        if kind == "fault-kind":
            field, value = "fault", draw(st.one_of(st.text(max_size=20), st.sampled_from(
                [*FAULT_KINDS, "kill-everything", "kill_replica", "KILL-REPLICA"])))
        elif kind == "at-s":
            field, value = "at_s", draw(st.one_of(
                st.floats(), st.integers(-(10**400), 10**400),
                st.sampled_from([-1, 0, 2.999, 3, 1e308, "10s", ".inf"])))
        else:
            field = draw(st.sampled_from(["duration_s", "factor", "at_s"]))
            value = draw(st.sampled_from([-1, -0.0, 0, 1, 1e308, -1e308, 10**20, 0.5, 21]))
        doc["method"][i][field] = value
        return doc, ("method", i, field), kind

    @st.composite
    def mutations(draw: Any) -> Mutation:
        doc, path, kind = draw(st.one_of(mutated_trees(shipped), faults()))
        text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), sort_keys=False)
        as_file = draw(st.integers(0, 9)) == 0
        return Mutation(text.encode() if as_file else text, path, f"mutation:{kind}")

    def nested(depth: int, opener: str, alias: bool) -> Mutation:
        if alias:  # a document that refers to itself, and one aliased many times
            return Mutation("title: &t [*t]\nload: &l {a: *l}\nmethod: [*t, *l]\n"
                            "x: &b [a, a, a]\ny: [*b, *b, *b, *b]\n", None, "aliases")
        close = {"[": "]", "{": "}", "- ": ""}[opener]
        body = (opener * depth + "x" + close * depth) if close else (  # block style: indented
            "\n" + "\n".join(" " * (2 + 2 * i) + "-" for i in range(depth)) + " x")
        return Mutation(f"title: t\nload: {body}\n", None, "nested")

    random_text = st.text(max_size=200).map(lambda t: Mutation(t, None, "text"))
    random_doc = hostile_values().map(lambda v: Mutation(yaml.safe_dump(v), None, "document"))
    random_bytes = st.binary(max_size=200).map(lambda b: Mutation(b, None, "file"))
    # PyYAML gives up (RecursionError) past a few hundred levels; flow style costs O(depth²)
    deep = st.builds(nested, st.sampled_from([1, 20, 200, 450, 900]),
                     st.sampled_from(["[", "{", "- "]), st.booleans())
    others = st.one_of(random_text, random_doc, random_bytes, deep)
    # six cases in ten mutate a shipped scenario (one_of alone drew them about one in three)
    return st.integers(0, 9).flatmap(lambda n: mutations() if n < 6 else others)


def fuzz_scenarios(*, examples: int, seed: int | None = None) -> FuzzResult:
    """Run ``examples`` cases of ``scenario_cases`` through ``check_scenario_text``."""
    with tempfile.TemporaryDirectory(prefix="recdrill-fuzz-scenario-") as scratch:
        return run_property("scenario", scenario_cases(),
                            lambda case: check_scenario_text(case, Path(scratch)),
                            examples=examples, seed=seed)
