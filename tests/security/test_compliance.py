"""`recdrill compliance`: in policy on a clean setup; out of policy, named, for each breach."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recdrill.compliance import (
    AuditFact,
    Facts,
    FileFact,
    KeyFact,
    PendingFact,
    PlaceFact,
    Policy,
    assess,
)
from recdrill.compliance_cli import EXIT_IN_POLICY, EXIT_OUT_OF_POLICY, EXIT_USAGE

NOW = datetime(2026, 11, 30, tzinfo=UTC)
_ENV = ("RECDRILL_AUDIT_LOG", "RECDRILL_AUDIT_KEY", "RECDRILL_FORGET_REGISTER",
        "RECDRILL_PSEUDONYM_KEY", "RECDRILL_DATA_KEY", "RECDRILL_SIGNING_KEY",
        "RECDRILL_PUBLIC_KEY", "RECDRILL_DATA", "RECDRILL_CHECKPOINT", "RECDRILL_ARTIFACTS",
        "RECDRILL_STORE", "RECDRILL_STORE_KEY_FILES", "RECDRILL_STORE_KEYS")


def _codes(facts: Facts, policy: Policy | None = None) -> list[str]:
    return [f.code for f in assess(facts, policy or Policy()).violations]


# -- the rules, pure -------------------------------------------------------------------------

def test_clean_facts_are_in_policy() -> None:
    data = PlaceFact("data", "d", (FileFact("d/e.csv", True, "clear"),))
    keys = (KeyFact("data", "k", NOW - timedelta(days=10), "rotate"),)
    assert assess(Facts(NOW, (data,), keys), Policy()).in_policy


def test_unsealed_raw_data_is_out_of_policy_unless_allowed() -> None:
    facts = Facts(NOW, (PlaceFact("data", "d", (FileFact("d/e.csv", False, "clear"),)),))
    assert _codes(facts) == ["data-not-sealed"]
    assert _codes(facts, Policy(require_encryption=False)) == []


def test_a_key_older_than_the_max_is_out_of_policy() -> None:
    key = KeyFact("signing", "s.key", NOW - timedelta(days=366), "rotate")
    assert _codes(Facts(NOW, keys=(key,))) == ["key-too-old"]
    assert _codes(Facts(NOW, keys=(key,)), Policy(max_key_age_days=400)) == []


def test_a_forget_pending_past_the_max_is_out_of_policy_and_any_pending_is_listed() -> None:
    old = PendingFact("t1", "p_x", NOW - timedelta(days=31), stored_pending=2)
    new = PendingFact("t2", "p_y", NOW - timedelta(days=1))
    report = assess(Facts(NOW, pending=(old, new)), Policy())
    assert [f.code for f in report.findings] == ["forget-overdue", "forget-pending"]
    assert "2 stored versions" in report.violations[0].message


def test_missing_pseudonym_key_with_artifacts_and_a_broken_audit_chain() -> None:
    art = PlaceFact("artifact", "a", (FileFact("a/v1/histories.npz", False, "pseudonymised"),))
    key = KeyFact("pseudonym", "p.key", None, "restore")
    audit = AuditFact("audit.jsonl", True, 3, (("edited", "error", "seq 2 changed"),))
    assert _codes(Facts(NOW, (art,), (key,), audit=audit)) == ["pseudonym-key-missing",
                                                                "audit-broken"]


def test_clear_ids_in_artifacts_and_a_foreign_pseudonym_key() -> None:
    clear = PlaceFact("artifact", "a", (FileFact("a/v1/histories.npz", False, "clear"),))
    foreign = PlaceFact("artifact", "b", key_ids=(("b/v2", "1" * 16),))
    facts = Facts(NOW, (clear, foreign), pseudonym_key_id="2" * 16)
    assert _codes(facts) == ["clear-ids-shipped", "pseudonym-key-mismatch"]


# -- the command, on real files -----------------------------------------------------------------

@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A clean deployment: keys, sealed raw data, a signed pseudonymised artifact, an audit
    log; the default places (cwd, caches) are empty."""
    from export.keys import ensure_signing_key
    from export.manifest import build_manifest, write_manifest
    from export.signing import SIGNING_METHOD, key_id_of, sign_artifact
    from recdrill.data_cli import app as data_app
    from security.pseudonym import Pseudonymiser

    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RECDRILL_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("RECDRILL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RECDRILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(data_app, ["keys"]).exit_code == 0
    data = tmp_path / "data"
    data.mkdir()
    (data / "events.csv").write_text("user_id,item_id,timestamp\nu1,i1,1\nu2,i2,2\n")
    assert CliRunner().invoke(data_app, ["encrypt", str(data)]).exit_code == 0
    private, public = ensure_signing_key()
    art = tmp_path / "arts" / "v1"
    art.mkdir(parents=True)
    pseudonyms = Pseudonymiser.load()
    buf = io.BytesIO()
    np.savez(buf, user_ids=np.array(pseudonyms.many(["u1", "u2"])), flat=np.arange(4),
             offsets=np.array([2]))
    (art / "histories.npz").write_bytes(buf.getvalue())
    manifest = build_manifest(art, version="v1", kind="sequential-recommender",
                              io={"inputs": [], "outputs": [], "max_seq_len": 4, "n_items": 4},
                              metrics={}, signing={"method": SIGNING_METHOD,
                                                   "key_id": key_id_of(public)},
                              pseudonym_key_id=pseudonyms.key_id)
    write_manifest(art, manifest)
    sign_artifact(art, private)
    return {"data": data, "arts": tmp_path / "arts", "keys": tmp_path / "keys",
            "state": tmp_path / "state"}


def _check(setup: dict[str, Path], *extra: str) -> tuple[int, dict[str, Any]]:
    from recdrill.cli import app

    result = CliRunner().invoke(app, ["compliance", "--data", str(setup["data"]),
                                      "--artifacts", str(setup["arts"]), "--json", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def _violations(report: dict[str, Any]) -> dict[str, str]:
    return {v["code"]: v["subject"] for v in report["violations"]}


def test_a_clean_setup_is_in_policy_and_says_where_user_data_lives(setup: dict[str, Path]
                                                                   ) -> None:
    code, report = _check(setup)
    assert code == EXIT_IN_POLICY, report["violations"]
    places = {p["kind"]: p for p in report["places"]}
    assert places["data"]["files"][0]["sealed"] is True
    assert places["data"]["id_forms"] == ["clear"]
    assert places["artifact"]["id_forms"] == ["pseudonymised"]
    assert {"register", "audit"} <= set(places)
    assert {k["name"] for k in report["keys"]} >= {"pseudonym", "data", "audit", "signing"}


def test_unsealed_raw_data_is_named(setup: dict[str, Path]) -> None:
    (setup["data"] / "more.csv").write_text("user_id,item_id,timestamp\nu3,i1,1\n")
    code, report = _check(setup)
    assert code == EXIT_OUT_OF_POLICY
    assert _violations(report) == {"data-not-sealed": str(setup["data"])}
    assert "recdrill data encrypt" in report["violations"][0]["fix"]


def test_a_key_older_than_the_max_is_named(setup: dict[str, Path]) -> None:
    path = setup["keys"] / "data.key"
    body = json.loads(path.read_text())
    body["created"] = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    path.write_text(json.dumps(body))
    assert base64.b64decode(body["key"])  # the same key: sealed data still opens
    code, report = _check(setup)
    assert code == EXIT_OUT_OF_POLICY and _violations(report) == {"key-too-old": str(path)}
    assert _check(setup, "--max-key-age-days", "500")[0] == EXIT_IN_POLICY


def test_a_forget_pending_past_the_max_is_named(setup: dict[str, Path]) -> None:
    from security.forget_register import ForgetRegister, ForgetRequest

    register = ForgetRegister(setup["state"] / "forget.jsonl")
    old = (datetime.now(UTC) - timedelta(days=45)).isoformat(timespec="seconds")
    register.record(ForgetRequest("t-old", "p_" + "a" * 32, old, "pending"))
    register.record(ForgetRequest.new("p_" + "b" * 32))
    code, report = _check(setup)
    assert code == EXIT_OUT_OF_POLICY
    assert _violations(report) == {"forget-overdue": "ticket t-old"}
    assert len(report["pending_forget"]) == 2


def test_a_broken_audit_chain_is_named(setup: dict[str, Path]) -> None:
    log = setup["state"] / "audit.jsonl"
    log.write_text(log.read_text().replace('"operator"', '"admin"', 1))
    code, report = _check(setup)
    assert code == EXIT_OUT_OF_POLICY and _violations(report) == {"audit-broken": str(log)}


def test_tables_for_humans_and_bad_usage(setup: dict[str, Path]) -> None:
    from recdrill.cli import app

    human = CliRunner().invoke(app, ["compliance", "--data", str(setup["data"]),
                                     "--artifacts", str(setup["arts"])])
    assert human.exit_code == EXIT_IN_POLICY and "IN POLICY" in human.stdout
    assert "Where user data lives" in human.stdout
    bad = CliRunner().invoke(app, ["compliance", "--data", str(setup["data"] / "nope")])
    assert bad.exit_code == EXIT_USAGE and "does not exist" in bad.stderr
