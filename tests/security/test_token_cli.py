"""`recdrill token create|list|revoke`: the first admin bootstraps, then only admins change
tokens; secrets are printed once and never stored; every change is on the audit chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from security.audit import AuditLog
from security.token_cli import app
from security.tokens import TokenTable


def _run(tmp: Path, *args: str, token: str | None = None) -> tuple[int, str]:
    env = {"RECDRILL_TOKENS": str(tmp / "tokens.json"), "RECDRILL_AUDIT_LOG": str(tmp / "a.jsonl")}
    if token is not None:
        env["RECDRILL_TOKEN"] = token
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_tokens_lifecycle_with_admin_gate_and_audit(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECDRILL_KEY_DIR", str(tmp_path / "keys"))  # the audit key, both sides
    monkeypatch.delenv("RECDRILL_AUDIT_KEY", raising=False)
    code, out = _run(tmp_path, "create", "--name", "root", "--role", "admin")
    assert code == 0, out
    admin = json.loads(out)["token"]
    assert admin.startswith("rdt_") and admin not in (tmp_path / "tokens.json").read_text()
    # From now on an admin token is needed, and a lower role is not enough.
    code, out = _run(tmp_path, "create", "--name", "app")
    assert code == 1 and "admin token exists" in out
    code, out = _run(tmp_path, "create", "--name", "sre", "--role", "operator", token=admin)
    operator = json.loads(out)["token"]
    code, out = _run(tmp_path, "create", "--name", "app", token=operator)
    assert code == 1 and "has role operator; tokens need admin" in out
    code, out = _run(tmp_path, "create", "--name", "app", "--role", "root", token=admin)
    assert code == 2 and "reader, operator, admin" in out
    code, out = _run(tmp_path, "list", token=admin)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["name"], r["role"]) for r in rows] == [("root", "admin"), ("sre", "operator")]
    assert all("sha256" not in r and "token" not in r for r in rows)
    code, out = _run(tmp_path, "revoke", "sre", token=admin)
    assert code == 0 and json.loads(out)["revoked"]
    assert TokenTable(tmp_path / "tokens.json").authenticate(operator) is None
    assert _run(tmp_path, "revoke", "sre", token=admin)[0] == 1
    log = AuditLog(tmp_path / "a.jsonl")
    log.verify()
    assert [(e.action, e.actor, e.role) for e in log.entries()] == [
        ("token.create", log.entries()[0].actor, "admin"), ("token.create", "root", "admin"),
        ("token.revoke", "root", "admin")]
    assert admin not in log.path.read_text() and operator not in log.path.read_text()


def test_the_umbrella_cli_lists_the_token_group(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "recdrill", "token", "--help"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    assert "create" in out and "revoke" in out
