from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import committed_store

from replication.cli import ExitCode, main
from replication.keys import KeySpec
from replication.testing import flip_byte
from security.audit import AuditLog


def _json(capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    return json.loads(capsys.readouterr().out)


def test_keygen_then_checkout_through_the_cli(tmp_path: Path, artifact, signing_keys, capsys) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "store.key"
    assert main(["keygen", str(key)]) == ExitCode.OK
    key_id = _json(capsys)["key_id"]
    committed_store(tmp_path / "s", KeySpec(files=(str(key),), env_var=None).load(), artifact("v1"),
                    signing_keys.public)
    args = ["checkout", "--store", str(tmp_path / "s"), "--public-key", str(signing_keys.public),
            "--store-key", str(key), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == ExitCode.OK
    assert _json(capsys) == {"version": "v1", "path": str(tmp_path / "c" / "v1")}
    assert len(key_id) == 16


def test_corrupt_store_exits_with_integrity_code(tmp_path: Path, artifact, signing_keys, capsys) -> None:  # type: ignore[no-untyped-def]
    vs = committed_store(tmp_path / "s", KeySpec(env_var=None).load(), artifact("v1"), signing_keys.public)
    digest = next(f.sha256 for f in vs.get_record("v1").files if f.path == "model.onnx")
    flip_byte(tmp_path / "s" / "blobs" / "sha256" / digest)
    code = main(["checkout", "--store", str(tmp_path / "s"), "--public-key", str(signing_keys.public),
                 "--cache-dir", str(tmp_path / "c")])
    assert code == ExitCode.INTEGRITY == 3
    out = _json(capsys)
    assert out["error"] == "IntegrityError" and "v1/model.onnx" in out["message"]


def test_audit_verify_exit_codes(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(tmp_path / "a.jsonl")
    first = log.append("me", "publish", version="v1")
    log.append("me", "rollback", version="v1")
    assert main(["audit", "verify", "--audit", str(log.path)]) == ExitCode.OK
    assert _json(capsys)["entries"] == 2
    lines = log.path.read_text().splitlines()
    log.path.write_text(lines[1] + "\n")  # the first entry dropped
    assert main(["audit", "verify", "--audit", str(log.path)]) == ExitCode.AUDIT_BROKEN
    assert "dropped" in _json(capsys)["message"]
    assert first.hash


def test_usage_error_is_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["rollback"]) == ExitCode.USAGE
