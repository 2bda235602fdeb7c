"""Markers from the path (unit / integration / e2e) and the no-Ray guard for unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(_ROOT).parts
        kind = parts[0] if parts[0] in ("integration", "e2e") else "unit"
        item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session", autouse=True)
def _private_key_and_state_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keys (pseudonym, data, signing) and state (forget register, audit) of the whole session
    live in temp dirs, never in the user's home; set before any session fixture exports, so
    exporter and server find the same pseudonym key. Ray nodes started later inherit them."""
    root = tmp_path_factory.mktemp("recdrill-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECDRILL_KEY_DIR", str(root / "keys"))
        mp.setenv("RECDRILL_STATE_DIR", str(root / "state"))
        for var in ("RECDRILL_PSEUDONYM_KEY", "RECDRILL_DATA_KEY", "RECDRILL_FORGET_REGISTER"):
            mp.delenv(var, raising=False)
        yield


@pytest.fixture(autouse=True)
def _disallow_ray_init(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unit tests never start Ray (Ray's own ``disallow_ray_init`` pattern)."""
    if request.node.get_closest_marker("unit") is not None:
        try:
            import ray
        except ImportError:  # pragma: no cover
            yield
            return

        def _refuse(*args: object, **kwargs: object) -> None:
            raise RuntimeError("unit tests must not start Ray: move this test to tests/integration")

        monkeypatch.setattr(ray, "init", _refuse)
    yield


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest's own summary: one last line naming every failed or errored test with the
    first line of its reason, so a CI page that keeps only the tail still says what broke."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    bad = [r for key in ("failed", "error") for r in reporter.stats.get(key, [])]
    if not bad:
        return

    def _why(report: pytest.TestReport) -> str:
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(report.longrepr)
        return text.strip().splitlines()[0][:160] if text.strip() else "?"

    names = "; ".join(f"{r.nodeid[:200]} [{r.when}] {_why(r)}" for r in bad)
    reporter.write_line(f"recdrill: {len(bad)} not passed: {names}")
