from __future__ import annotations

import json
from pathlib import Path

import pytest

from replication.audit import AuditLog, FixedClock
from replication.errors import AuditChainBroken


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl", clock=FixedClock(1_800_000_000.0))
    for i, action in enumerate(["publish", "publish", "rollback", "repair"], start=1):
        log.append("alice@host", action, version=f"v{i}", digests={"model.onnx": f"{i:064x}"})
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def test_chain_verifies_and_entries_hold_the_fields(log: AuditLog) -> None:
    head = log.verify()
    entries = log.entries()
    assert head == entries[-1].hash and [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[1].prev == entries[0].hash and entries[0].time == "2027-01-15T08:00:00.000Z"
    assert (entries[2].actor, entries[2].action, entries[2].version) == (
        "alice@host",
        "rollback",
        "v3",
    )


def test_edited_entry_is_detected(log: AuditLog) -> None:
    lines = _lines(log)
    entry = json.loads(lines[1])
    entry["version"] = "v666"
    lines[1] = json.dumps(entry, sort_keys=True)
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditChainBroken, match="edited") as info:
        log.verify()
    assert info.value.line == 2


def test_dropped_entry_is_detected(log: AuditLog) -> None:
    lines = _lines(log)
    log.path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    with pytest.raises(AuditChainBroken, match="dropped") as info:
        log.verify()
    assert info.value.line == 2


def test_reordered_entries_are_detected(log: AuditLog) -> None:
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditChainBroken):
        log.verify()


def test_tail_truncation_needs_the_known_head(log: AuditLog) -> None:
    head = log.verify()
    log.path.write_text("\n".join(_lines(log)[:-1]) + "\n")
    log.verify()  # a shorter chain is still a chain
    with pytest.raises(AuditChainBroken, match="dropped from the end"):
        log.verify(expected_head=head)


def test_missing_log_fails(tmp_path: Path) -> None:
    with pytest.raises(AuditChainBroken, match="no audit log"):
        AuditLog(tmp_path / "none.jsonl").verify()
