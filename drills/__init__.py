"""Disaster-recovery drills: declarative scenarios that break the running system under
open-loop load and judge every SLO as a plain client sees it.

Example::

    from drills import load_scenario, resolve, run_drill, RunOptions, DrillInputs
    journal = run_drill(load_scenario(resolve("replica-kill")),
                        RunOptions(Path("runs/drills/replica-kill"), DrillInputs(art, pub)))
    journal["held"], journal["breach"]
"""

from __future__ import annotations

from drills.catalog import resolve
from drills.errors import DrillError, EnvironmentError_, FaultError, ScenarioError
from drills.loader import load_scenario, parse_scenario
from drills.runner import RunOptions, run_drill
from drills.scenario import FAULT_KINDS, Scenario
from drills.system import DrillInputs

__all__ = [
    "FAULT_KINDS",
    "DrillError",
    "DrillInputs",
    "EnvironmentError_",
    "FaultError",
    "RunOptions",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "resolve",
    "run_drill",
]
