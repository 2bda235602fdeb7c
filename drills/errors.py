"""Errors of the drills package.

Hierarchy::

    DrillError                 root of everything drills raise
    ├── ScenarioError          a scenario file is malformed (file, line, field, what was expected)
    ├── EnvironmentError_      the system under drill could not be set up or reached
    └── FaultError             a fault could not be injected or its proof not observed
"""

from __future__ import annotations

__all__ = ["DrillError", "EnvironmentError_", "FaultError", "ScenarioError"]


class DrillError(Exception):
    """Root of every error the drills package raises."""


class ScenarioError(DrillError):
    """A scenario is invalid; the message names file, line, field and what was expected."""


class EnvironmentError_(DrillError):
    """The cluster, artifact or serving deployment under drill could not be set up."""


class FaultError(DrillError):
    """A fault could not be injected, or the proof that it happened was not observed."""
