"""Errors of the bench stage (load generator, contenders, suites).

Hierarchy::

    BenchError               root of everything bench raises on purpose
    ├── ConfigError          a schedule, phase, workload or suite setting is wrong (also ValueError)
    ├── WorkloadError        the artifact / checkpoint has no usable held-out users
    ├── ContenderError       a baseline server failed to start, become ready or stop
    └── GeneratorError       a load-generator process failed (its traceback is in the message)
"""

from __future__ import annotations

__all__ = ["BenchError", "ConfigError", "ContenderError", "GeneratorError", "WorkloadError"]


class BenchError(Exception):
    """Root of the bench stage's errors."""


class ConfigError(BenchError, ValueError):
    """A bench setting is out of range; the message names it and the accepted range."""


class WorkloadError(BenchError):
    """The held-out users could not be built from the given files."""


class ContenderError(BenchError):
    """A contender server did not start, answer its health check, or stop."""


class GeneratorError(BenchError):
    """A load-generator child process failed."""
