"""Tokens and access decisions as pure logic: hashing, roles, revocation, one 401 for all."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from security import access
from security.access import Authorizer, bearer
from security.tokens import Role, TokenTable, hash_token, parse_role


@pytest.fixture
def table(tmp_path: Path) -> TokenTable:
    return TokenTable(tmp_path / "keys" / "tokens.json")


def test_the_table_stores_hashes_only_and_is_private(table: TokenTable) -> None:
    token, entry = table.create("ci", Role.OPERATOR)
    raw = table.path.read_text()
    assert token not in raw and token.split("_")[-1] not in raw
    assert json.loads(raw)["tokens"][0]["sha256"] == hash_token(token)
    assert stat.S_IMODE(os.stat(table.path).st_mode) == 0o600
    assert "sha256" not in entry.public()
    assert table.authenticate(token).role == Role.OPERATOR  # type: ignore[union-attr]


@pytest.mark.parametrize("mangle", [
    lambda t: t + "x", lambda t: t[:-1], lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: t.replace("rdt_", "rdx_"), lambda t: "rdt_00000000_" + t.split("_", 2)[2],
    lambda t: "", lambda t: t[:4] + t[4:12].upper() + t[12:] + "0"])
def test_a_near_miss_is_nobody(table: TokenTable, mangle: object) -> None:
    token, _ = table.create("ci", Role.READER)
    assert table.authenticate(mangle(token)) is None  # type: ignore[operator]


def test_revoked_tokens_and_names(table: TokenTable) -> None:
    token, entry = table.create("ci", Role.READER)
    with pytest.raises(ValueError, match="active token named 'ci'"):
        table.create("ci", Role.ADMIN)
    table.revoke("ci")
    assert table.authenticate(token) is None
    with pytest.raises(KeyError):
        table.revoke(entry.id)
    again, _ = table.create("ci", Role.READER)  # the name is free again
    assert table.authenticate(again) is not None


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.READER < Role.OPERATOR < Role.ADMIN
    assert parse_role(" Operator ") == Role.OPERATOR
    with pytest.raises(ValueError, match="reader, operator, admin"):
        parse_role("root")


def test_bearer_parsing() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer("Bearer ") is None and bearer(None) is None


def test_decisions_over_a_table(table: TokenTable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "RELOAD_S", 0.0)
    reader, _ = table.create("app", Role.READER)
    operator, _ = table.create("sre", Role.OPERATOR)
    auth = Authorizer(table=table.path)
    assert not auth.reads_open and auth.operators_enabled
    assert auth.check(f"Bearer {reader}", Role.READER).allowed
    assert auth.check(f"Bearer {operator}", Role.READER).allowed  # higher roles include lower
    denied = auth.check(f"Bearer {reader}", Role.OPERATOR)
    assert (denied.status, denied.grpc_code) == (403, "PERMISSION_DENIED")
    assert "'app' has role reader" in denied.message and reader not in denied.message
    missing, wrong = auth.check(None, Role.READER), auth.check("Bearer nope", Role.READER)
    assert (missing.status, wrong.status, wrong.grpc_code) == (401, 401, "UNAUTHENTICATED")
    # Unknown, wrong and revoked tokens get one and the same message: nothing helps a guess.
    table.revoke("app")
    time.sleep(0.01)
    revoked = auth.check(f"Bearer {reader}", Role.READER)
    assert revoked.status == 401 and revoked.message == wrong.message == access.INVALID


def test_static_tokens_keep_their_old_meaning() -> None:
    open_reads = Authorizer()
    assert open_reads.check(None, Role.READER).allowed
    off = open_reads.check("Bearer x", Role.OPERATOR)
    assert off.status == 403 and "disabled" in off.message
    legacy = Authorizer(static={"r": Role.READER, "a": Role.OPERATOR})
    assert legacy.check(None, Role.READER).status == 401
    assert legacy.check("Bearer a", Role.OPERATOR).allowed
    assert legacy.check("Bearer r", Role.OPERATOR).status == 403


def test_an_unreadable_table_keeps_the_last_good_one(table: TokenTable,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "RELOAD_S", 0.0)
    token, _ = table.create("app", Role.READER)
    auth = Authorizer(table=table.path)
    table.path.write_text("{broken")
    assert auth.check(f"Bearer {token}", Role.READER).allowed


def test_commands_need_a_role_once_tokens_are_in_use(table: TokenTable) -> None:
    from security.errors import AccessDenied
    from security.tokens import require

    assert require(table, None, Role.OPERATOR) is None  # no table: access control not in use
    reader, _ = table.create("app", Role.READER)
    operator, _ = table.create("sre", Role.OPERATOR)
    with pytest.raises(AccessDenied, match="pass a token of role operator") as missing:
        require(table, None, Role.OPERATOR)
    with pytest.raises(AccessDenied, match="has role reader") as low:
        require(table, reader, Role.OPERATOR)
    assert (missing.value.status, low.value.status) == (401, 403)
    assert require(table, operator, Role.OPERATOR).name == "sre"  # type: ignore[union-attr]


def test_a_drill_is_refused_without_an_operator_token(table: TokenTable, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from drills.cli import app

    reader, _ = table.create("app", Role.READER)
    env = {"RECDRILL_TOKENS": str(table.path), "RECDRILL_AUDIT_LOG": str(tmp_path / "a.jsonl")}
    for extra, want in (({}, "drill refused (401)"),
                        ({"RECDRILL_TOKEN": reader}, "drill refused (403)")):
        result = CliRunner().invoke(app, ["run", "game-day"], env={**env, **extra})
        assert result.exit_code != 0 and want in result.output, result.output
    assert not (tmp_path / "a.jsonl").exists()  # refused before anything started
