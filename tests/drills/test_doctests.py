"""The examples in the drills modules' docstrings run and hold (doctest)."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["drills.scenario", "drills.plan", "drills.loader",
                                    "drills.catalog", "drills.slo", "drills.runner",
                                    "drills.faults", "drills.release_faults", "bench.loadgen.outcomes",
                                    "serving.frontdoor", "serving.canary"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
