"""The examples in the bench modules' docstrings run and hold (doctest)."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["bench.loadgen.overload", "bench.frontdoor_report",
                                    "bench.contenders.serve_haproxy", "bench.contenders.launch",
                                    "bench.contenders.process", "bench.suite"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
