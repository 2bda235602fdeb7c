"""The shipped scenario catalog: ``drills/scenarios/<name>.yaml``, where name == title.

Example:
    >>> "replica-kill" in catalog()
    True
    >>> resolve("replica-kill.yaml") == catalog()["replica-kill"]
    True
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from drills.errors import ScenarioError
from drills.loader import load_scenario

__all__ = ["SCENARIO_DIR", "catalog", "describe", "resolve"]

SCENARIO_DIR = Path(__file__).parent / "scenarios"


def catalog(directory: Path = SCENARIO_DIR) -> dict[str, Path]:
    """Scenario name (the file stem) -> path, sorted by name.

    Example:
        >>> sorted(catalog())[:2]
        ['bad-model-rollout', 'checkpoint-corruption']
    """
    return {p.stem: p for p in sorted(directory.glob("*.yaml"), key=lambda p: p.stem)}


def resolve(name_or_path: str, directory: Path = SCENARIO_DIR) -> Path:
    """An existing scenario file, else a catalog name (``.yaml`` optional).

    Example:
        >>> resolve("node-kill").name
        'node-kill.yaml'
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    known = catalog(directory)
    name = name_or_path.removesuffix(".yaml")
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ScenarioError(f"{name_or_path!r} is neither a scenario file nor a catalog name; "
                        f"{hint}catalog: {', '.join(known) or '(empty)'}")


def describe(directory: Path = SCENARIO_DIR) -> list[dict[str, Any]]:
    """One summary per catalog scenario (``recdrill drill list``); each file is validated.

    Example:
        >>> [d["faults"] for d in describe() if d["name"] == "overload"]
        [['overload']]
    """
    out: list[dict[str, Any]] = []
    for name, path in catalog(directory).items():
        scenario = load_scenario(path)
        load = scenario.load
        out.append({
            "name": name,
            "title": scenario.title,
            "description": scenario.description,
            "faults": [fault.fault for fault in scenario.method],
            "load": {"rate_rps": load.rate_rps, "rate_fraction": load.rate_fraction,
                     "protocol": load.protocol, "client": load.client,
                     "duration_s": load.duration_s},
            "path": str(path),
        })
    return out
