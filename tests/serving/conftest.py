"""Serving unit-test fixtures: tiny signed artifacts (never Ray)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serving_factory import Artifacts, build_artifacts


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return build_artifacts(tmp_path_factory.mktemp("serving") / "artifacts")
