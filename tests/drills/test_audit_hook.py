"""A drill run lands in the one audit log: drill.start before the system opens, drill.finish with
the verdict and the report's digests, even when the system cannot be set up (no Ray here)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from drills import runner
from drills.errors import EnvironmentError_
from drills.scenario import Scenario
from drills.system import DrillInputs
from security.audit import AuditLog

SCENARIO = Scenario.model_validate({
    "title": "kill-one-replica", "load": {"rate_rps": 10, "duration_s": 20},
    "method": [{"fault": "kill-replica", "at_s": 5}],
    "steady_state_hypothesis": {"slos": [{"kind": "success_ratio", "min": 0.99}]}})


@contextlib.contextmanager
def _no_cluster(*args: object) -> Iterator[None]:
    raise EnvironmentError_("no cluster in a unit test")
    yield


def test_a_failed_drill_records_start_and_finish(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "open_system", _no_cluster)
    log = tmp_path / "audit.jsonl"
    options = runner.RunOptions(tmp_path / "out", DrillInputs(tmp_path / "a", tmp_path / "k"),
                                progress=False, audit_log=log)
    journal = runner.run_drill(SCENARIO, options)
    start, finish = AuditLog(log).entries()
    assert (start.action, start.target, start.role) == ("drill.start", "kill-one-replica",
                                                        "operator")
    assert (finish.action, finish.target, finish.role) == ("drill.finish", "kill-one-replica",
                                                           "operator")
    assert finish.details["status"] == journal["status"] == "error"
    assert finish.details["held"] is False and "no cluster" in finish.details["error"]
    assert finish.details["report"] == journal["paths"]["report"]
    report = Path(journal["paths"]["journal"])
    assert finish.digests["journal.json"] == hashlib.sha256(report.read_bytes()).hexdigest()
    assert journal["audit"] == {"log": str(log), "start_seq": start.seq}
    assert AuditLog(log).check().ok


def test_a_drill_does_not_start_when_the_audit_log_refuses(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    AuditLog(log).append("me", "publish")
    AuditLog(log).append("me", "publish")
    log.write_text(log.read_text().splitlines()[0] + "\n")  # the tail cut behind the anchor
    options = runner.RunOptions(tmp_path / "out", DrillInputs(tmp_path / "a", tmp_path / "k"),
                                progress=False, audit_log=log)
    with pytest.raises(EnvironmentError_, match="cannot record the drill"):
        runner.run_drill(SCENARIO, options)
    assert not (tmp_path / "out").exists()
