"""Fuzz-test fixtures: the tiny signed artifacts of tests/serving, and a report of the cases
each fuzzer ran (printed at the end of the session; written as
JSON to ``$RECDRILL_FUZZ_REPORT`` when set).

``RECDRILL_FUZZ_EXAMPLES=N`` runs every fuzzer with N examples (HTTP: per operation and
phase) instead of its bounded default; ``RECDRILL_FUZZ_SEED`` replays a run's seed
(``security.fuzzing``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))

from serving_factory import Artifacts, build_artifacts

from security.fuzzing import FuzzResult

_RESULTS: list[FuzzResult] = []


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return build_artifacts(tmp_path_factory.mktemp("fuzz") / "artifacts")


@pytest.fixture
def fuzz_report() -> list[FuzzResult]:
    """Append each fuzzer's result here; the session reports them all."""
    return _RESULTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _RESULTS:
        return
    terminalreporter.section("fuzz cases")
    for result in _RESULTS:
        terminalreporter.write_line(f"{result.summary_line()}, seed {result.seed}")
    path = os.environ.get("RECDRILL_FUZZ_REPORT")
    if path:
        Path(path).write_text(json.dumps([r.as_dict() for r in _RESULTS], indent=2) + "\n")
