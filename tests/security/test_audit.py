"""The one audit chain: every kind of damage found and named, the anchor, old logs, the CLI,
concurrent writers."""

from __future__ import annotations

import getpass
import inspect
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from security import audit_cli
from security.audit import AuditLog, FixedClock, record
from security.audit_anchor import anchor_path, sign_head, write_anchor
from security.audit_check import AuditReport
from security.errors import AuditChainBroken

# Written by recdrill before role/target and the anchor existed (replication/audit.py at
# 5fbeb88), verbatim: such a log must keep verifying.
OLD_FORMAT = """\
{"action": "publish", "actor": "alice@host", "details": {"nodes": ["n1", "n2"], "w": 2}, "digests": {"manifest.json": "abababababababababababababababababababababababababababababababab"}, "hash": "210ac9dfee78721a71fdd2bcddb15454ad8bbf5ab67b48f1d5cf4a16cf3fa404", "prev": "0000000000000000000000000000000000000000000000000000000000000000", "seq": 1, "time": "2027-01-15T08:00:00.000Z", "version": "v1"}
{"action": "promote", "actor": "alice@host", "details": {}, "digests": {}, "hash": "a288e322382f3637724b5ca7eff463f855558498207ebff1c3fdedb5192a9e6b", "prev": "210ac9dfee78721a71fdd2bcddb15454ad8bbf5ab67b48f1d5cf4a16cf3fa404", "seq": 2, "time": "2027-01-15T08:01:00.000Z", "version": "v1"}
{"action": "rollback", "actor": "bob@host", "details": {"to": "v0"}, "digests": {}, "hash": "4f58408feb72e002961a6e577d594806fdf58b8a82852481b9ec7c024cd38d60", "prev": "a288e322382f3637724b5ca7eff463f855558498207ebff1c3fdedb5192a9e6b", "seq": 3, "time": "2027-01-15T08:02:00.000Z", "version": null}
"""
OLD_HEAD = "4f58408feb72e002961a6e577d594806fdf58b8a82852481b9ec7c024cd38d60"


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl", FixedClock(1_800_000_000.0), tmp_path / "audit.key")
    for i, action in enumerate(["publish", "publish", "rollback", "repair"], start=1):
        log.append("alice@host", action, role="operator", target=f"v{i}", version=f"v{i}",
                   digests={"model.onnx": f"{i:064x}"})
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(line + "\n" for line in lines))


def _kinds(report: AuditReport) -> list[tuple[str, int, tuple[int, ...]]]:
    return [(p.kind, p.line, p.seqs) for p in report.errors]


def test_chain_verifies_and_entries_hold_the_fields(log: AuditLog) -> None:
    head = log.verify()
    entries = log.entries()
    assert head == entries[-1].hash and [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[1].prev == entries[0].hash and entries[0].time == "2027-01-15T08:00:00.000Z"
    assert (entries[2].actor, entries[2].action, entries[2].role, entries[2].target) == (
        "alice@host", "rollback", "operator", "v3")
    report = log.check()
    assert report.ok and report.problems == () and report.anchor.state == "valid"
    assert (tmp := log.key_path) is not None and tmp.stat().st_mode & 0o777 == 0o600


def test_edited_entry_is_named_with_line_and_seq(log: AuditLog) -> None:
    lines = _lines(log)
    entry = json.loads(lines[1])
    entry["version"] = "v666"
    lines[1] = json.dumps(entry, sort_keys=True)
    _write(log, lines)
    assert _kinds(log.check()) == [("edited", 2, (2,))]
    with pytest.raises(AuditChainBroken, match="edited") as info:
        log.verify()
    assert info.value.line == 2


def test_a_role_change_is_an_edit(log: AuditLog) -> None:
    _write(log, [line.replace('"role": "operator"', '"role": "admin"', 1) if i == 0 else line
                 for i, line in enumerate(_lines(log))])
    assert _kinds(log.check()) == [("edited", 1, (1,))]


def test_an_edited_and_rehashed_entry_breaks_the_next_link(log: AuditLog) -> None:
    lines = _lines(log)
    forged = log.entries()[1].__class__(**{**json.loads(lines[1]), "actor": "mallory"}).sealed()
    lines[1] = forged.to_line().decode().rstrip("\n")
    _write(log, lines)
    assert _kinds(log.check()) == [("edited", 3, (2, 3))]


def test_dropped_entry_is_named(log: AuditLog) -> None:
    lines = _lines(log)
    _write(log, lines[:1] + lines[2:])
    report = log.check()
    assert _kinds(report) == [("dropped", 2, (2,))]
    assert "seq 2 missing" in report.errors[0].message
    with pytest.raises(AuditChainBroken, match="dropped") as info:
        log.verify()
    assert info.value.line == 2


def test_reordered_entries_are_named(log: AuditLog) -> None:
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    _write(log, lines)
    report = log.check()
    assert [p.kind for p in report.errors] == ["reordered"]
    assert report.errors[0].seqs in ((2,), (3,)) and report.errors[0].line in (2, 3)
    with pytest.raises(AuditChainBroken, match="reordered"):
        log.verify()


def test_an_entry_moved_far_is_the_one_named(log: AuditLog) -> None:
    lines = _lines(log)
    _write(log, [lines[0], lines[2], lines[3], lines[1]])
    assert _kinds(log.check()) == [("reordered", 4, (2,))]


def test_a_copied_entry_is_an_insertion(log: AuditLog) -> None:
    lines = _lines(log)
    _write(log, lines[:3] + [lines[1]] + lines[3:])
    assert _kinds(log.check()) == [("inserted", 4, (2,))]


@pytest.mark.parametrize("cut", [1, 2])
def test_tail_truncation_is_found_from_the_anchor_alone(log: AuditLog, cut: int) -> None:
    _write(log, _lines(log)[:-cut])
    report = log.check()
    assert _kinds(report) == [("truncated", 4 - cut, tuple(range(5 - cut, 5)))]
    assert "cut from the end: seq" in report.errors[0].message
    with pytest.raises(AuditChainBroken, match="truncated"):
        log.verify()


def test_a_torn_last_line_is_truncation(log: AuditLog) -> None:
    text = log.path.read_text()
    log.path.write_text(text[: len(text) - 40])
    assert [(p.kind, p.line) for p in log.check().errors] == [("truncated", 4), ("truncated", 4)]


def test_every_problem_is_listed_not_only_the_first(log: AuditLog) -> None:
    lines = _lines(log)
    lines[0] = lines[0].replace('"v1"', '"v9"')
    _write(log, [lines[0], lines[2]])  # seq 1 edited, 2 dropped, 4 cut off
    report = log.check()
    assert [p.kind for p in report.errors] == ["edited", "dropped", "truncated"]
    message = str(pytest.raises(AuditChainBroken, log.verify).value)
    assert "edited" in message and "2 more" in message


def test_a_forged_anchor_is_an_error(log: AuditLog, tmp_path: Path) -> None:
    lines = _lines(log)
    _write(log, lines[:2])
    last = log.entries()[-1]
    write_anchor(log.path, sign_head(b"m" * 32, last.seq, last.hash))  # not the audit key
    report = log.check()
    assert [(p.kind, p.line) for p in report.errors] == [("anchor", 0)]
    assert "MAC does not verify" in report.errors[0].message


def test_a_missing_anchor_is_a_warning(log: AuditLog) -> None:
    anchor_path(log.path).unlink()
    report = log.check()
    assert report.ok and [p.kind for p in report.warnings] == ["unanchored"]


def test_without_the_key_the_anchor_is_unverified_but_still_used(log: AuditLog,
                                                                 tmp_path: Path) -> None:
    _write(log, _lines(log)[:-1])
    report = AuditLog(log.path, key_path=tmp_path / "elsewhere.key").check()
    assert [p.kind for p in report.warnings] == ["anchor"]
    assert [p.kind for p in report.errors] == ["truncated"]


def test_an_append_refuses_to_hide_a_cut_tail(log: AuditLog) -> None:
    _write(log, _lines(log)[:-1])
    with pytest.raises(AuditChainBroken, match="cannot append"):
        log.append("me", "publish")
    assert len(log.entries()) == 3


def test_an_append_heals_a_torn_tail_and_records_it(log: AuditLog) -> None:
    with open(log.path, "ab") as fh:
        fh.write(b'{"action": "publi')  # a crash in the middle of the next append
    assert [p.kind for p in log.check().errors] == ["truncated"]
    entry = log.append("me", "publish")
    torn, last = log.entries()[-2:]
    assert torn.action == "audit.torn-tail" and torn.details["bytes"] == 17
    assert last == entry and entry.seq == 6
    assert log.check().ok and log.check().problems == ()


def test_a_missing_log_fails(tmp_path: Path) -> None:
    report = AuditLog(tmp_path / "none.jsonl").check()
    assert _kinds(report) == [("missing", 0, ())]
    with pytest.raises(AuditChainBroken, match="no audit log"):
        AuditLog(tmp_path / "none.jsonl").verify()


def test_the_expected_head_must_still_be_in_the_chain(log: AuditLog) -> None:
    old = log.verify()
    log.append("me", "publish")
    assert log.verify(expected_head=old) != old
    anchor_path(log.path).unlink()
    _write(log, _lines(log)[:3])
    log.verify()  # without anchor nor known head, a shorter chain is still a chain
    with pytest.raises(AuditChainBroken, match="dropped from the end"):
        log.verify(expected_head=old)


def test_an_old_format_log_verifies_and_takes_new_entries(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", key_path=tmp_path / "audit.key")
    log.path.write_text(OLD_FORMAT)
    assert log.verify() == OLD_HEAD
    assert [(e.role, e.target) for e in log.entries()] == [(None, None)] * 3
    entry = log.append("carol@host", "promote", role="operator", target="v2", version="v2")
    assert entry.prev == OLD_HEAD and entry.seq == 4
    report = log.check()
    assert report.ok and report.problems == () and report.head == entry.hash


def test_record_appends_to_the_one_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECDRILL_AUDIT_LOG", str(tmp_path / "state" / "audit.jsonl"))
    monkeypatch.setenv("RECDRILL_AUDIT_KEY", str(tmp_path / "keys" / "audit.key"))
    entry = record("token.create", target="tok_1", role="admin", details={"name": "ci"})
    assert entry.actor == f"{getpass.getuser()}@{socket.gethostname()}"
    assert AuditLog(tmp_path / "state" / "audit.jsonl").entries() == [entry]
    other = record("data.read", log=tmp_path / "other.jsonl", actor="op@h")
    assert (other.seq, other.actor, other.role) == (1, "op@h", None)
    assert (tmp_path / "keys" / "audit.key").exists()


def test_record_signature_is_pinned() -> None:
    assert str(inspect.signature(record)) == (
        "(action: 'str', *, target: 'str | None' = None, role: 'str | None' = None, "
        "version: 'str | None' = None, digests: 'Mapping[str, str] | None' = None, "
        "details: 'Mapping[str, Any] | None' = None, log: 'Path | None' = None, "
        "actor: 'str | None' = None) -> 'AuditEntry'")


def test_cli_verify_exit_codes_and_messages(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECDRILL_AUDIT_KEY", str(log.key_path))
    runner = CliRunner()
    ok = runner.invoke(audit_cli.app, ["verify", "--log", str(log.path)])
    assert ok.exit_code == audit_cli.EXIT_INTACT, ok.output
    assert json.loads(ok.stdout)["ok"] is True and ok.stderr == ""
    lines = _lines(log)
    _write(log, lines[:1] + lines[2:3])  # seq 2 dropped, seq 4 cut off
    bad = runner.invoke(audit_cli.app, ["verify", "--log", str(log.path)])
    assert bad.exit_code == audit_cli.EXIT_BROKEN
    assert [p["kind"] for p in json.loads(bad.stdout)["problems"]] == ["dropped", "truncated"]
    assert "error: " in bad.stderr and ": dropped: seq 2 missing" in bad.stderr
    assert ": truncated: the anchor says seq 4" in bad.stderr
    assert "audit chain broken: 2 error(s)" in bad.stderr


def test_cli_show_filters_and_limits(log: AuditLog) -> None:
    log.append("me", "drill.start", target="game-day")
    log.append("me", "drill.finish", target="game-day")
    runner = CliRunner()
    out = runner.invoke(audit_cli.app, ["show", "--log", str(log.path), "--action", "drill"])
    assert [json.loads(x)["action"] for x in out.stdout.splitlines()] == ["drill.start",
                                                                          "drill.finish"]
    out = runner.invoke(audit_cli.app, ["show", "--log", str(log.path), "--last", "2",
                                        "--action", "publish"])
    assert [json.loads(x)["seq"] for x in out.stdout.splitlines()] == [1, 2]


def test_the_umbrella_cli_lists_audit() -> None:
    from recdrill.cli import STAGES

    assert STAGES["audit"][0] == "security.audit_cli"


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from security.audit import AuditLog
    log = AuditLog(Path(sys.argv[1]), key_path=Path(sys.argv[2]))
    for i in range(int(sys.argv[3])):
        log.append(sys.argv[4], "publish", role="operator", target=f"v{i}")
""")


def test_concurrent_appends_from_two_processes_keep_the_chain(tmp_path: Path) -> None:
    path, key, n = tmp_path / "audit.jsonl", tmp_path / "audit.key", 40
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(key), str(n), who],
                              env={**os.environ, "PYTHONPATH": str(Path.cwd())})
             for who in ("a@h", "b@h")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log = AuditLog(path, key_path=key)
    report = log.check()
    assert report.ok and report.problems == () and report.entries == 2 * n
    assert sorted(e.actor for e in log.entries()).count("a@h") == n
