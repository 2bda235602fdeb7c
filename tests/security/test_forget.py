"""`recdrill data forget`: the proof that a user's events and id are gone from every stored file.

One real pipeline per module: synthetic data sealed at rest, a short training run (its
checkpoint sealed too), an exported signed artifact, a second raw directory of CSV and RecBole
atomic files, and an encrypted replication store holding the version. Then the user is
forgotten, and every file is opened the way it is stored and searched.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recdrill.data_cli import EXIT_OK, EXIT_PENDING, EXIT_USAGE, app
from recdrill.forget import Blocked, Scan, plan_forget
from recdrill.user_tables import format_of, inspect_bytes, without_users
from security.audit import AuditLog
from security.pseudonym import Pseudonymiser
from security.sealed import is_sealed, unseal

pytestmark = pytest.mark.slow

_ENV = ("RECDRILL_KEY_DIR", "RECDRILL_CACHE", "RECDRILL_STATE_DIR", "RECDRILL_AUDIT_LOG", "RECDRILL_AUDIT_KEY",
        "RECDRILL_FORGET_REGISTER", "RECDRILL_PSEUDONYM_KEY", "RECDRILL_DATA_KEY",
        "RECDRILL_SIGNING_KEY", "RECDRILL_PUBLIC_KEY", "RECDRILL_STORE_KEYS", "RECDRILL_DATA",
        "RECDRILL_CHECKPOINT", "RECDRILL_ARTIFACTS", "RECDRILL_STORE",
        "RECDRILL_STORE_KEY_FILES")


@dataclass(frozen=True)
class World:
    root: Path
    synth: Path
    raw: Path
    ckpt: Path
    arts: Path
    store: Path
    store_key: Path
    user: str
    other: str
    third: str
    version: str

    @property
    def places(self) -> list[str]:
        return ["--data", str(self.synth), "--data", str(self.raw), "--checkpoint",
                str(self.ckpt), "--artifacts", str(self.arts), "--store", str(self.store),
                "--store-key", str(self.store_key)]

    def data_key(self) -> bytes:
        from security.datadir import data_key

        key = data_key()
        assert key is not None
        return key

    def pseudonym(self, user: str) -> str:
        return Pseudonymiser.load().of(user)


def _hermetic(mp: pytest.MonkeyPatch, root: Path) -> None:
    """Keys, state and the default places all under ``root``: nothing of the checkout or the
    home directory is read or changed."""
    for var in _ENV:
        mp.delenv(var, raising=False)
    mp.setenv("RECDRILL_KEY_DIR", str(root / "keys"))
    mp.setenv("RECDRILL_STATE_DIR", str(root / "state"))
    mp.setenv("RECDRILL_CACHE", str(root / "cache"))
    mp.chdir(root)


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    _hermetic(monkeypatch, world.root)
    return world


def _invoke(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    out = result.stdout.strip().splitlines()
    return result.exit_code, json.loads(out[-1]) if out else {}, result.stderr


def _raw_files(raw: Path, user: str, other: str) -> None:
    raw.mkdir()
    (raw / "ml.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                  f"{other}\ti1\t1\n{user}\ti2\t2\n{other}\ti3\t3\n{user}\ti4\t4\n")
    (raw / "ml.user").write_text(f"user_id:token\tage:token\n{user}\t33\n{other}\t41\n")
    # A quoted comma and a quoted newline in another user's row: kept byte for byte.
    (raw / "events.csv").write_bytes((f'user_id,item_id,timestamp,note\r\n{user},i9,5,x\r\n'
                                      f'{other},i8,6,"a, b\nc"\r\n').encode())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from export.keys import ensure_signing_key
    from export.package import package_recommender
    from replication.keys import Keyring, generate_key_file
    from replication.repo import Ref, VersionStore
    from replication.store import open_store
    from replication.sync import upload_artifact
    from training.checkpoint import load_checkpoint
    from training.clean import CleanConfig
    from training.loaders import ColumnMapping
    from training.model import ModelConfig
    from training.pipeline import run_training
    from training.synthetic import SyntheticConfig, generate
    from training.train import TrainConfig

    root = tmp_path_factory.mktemp("forget")
    with pytest.MonkeyPatch.context() as mp:
        _hermetic(mp, root)
        synth = root / "synth"
        generate(SyntheticConfig(n_items=200, n_users=120, seed=3), synth, progress=False)
        assert _invoke("keys")[0] == EXIT_OK
        assert _invoke("encrypt", str(synth))[0] == EXIT_OK
        ckpt = root / "ckpt"
        run_training(str(synth), ckpt, ModelConfig(), TrainConfig(max_epochs=1, max_time_s=60),
                     CleanConfig(), ColumnMapping(event_type="event_type"), progress=False)
        users = load_checkpoint(ckpt).data.user_ids
        user, other, third = users[3], users[4], users[5]
        private, public = ensure_signing_key()
        version = package_recommender(load_checkpoint(ckpt), root / "arts" / "v1", private,
                                      public, quantize=False).version
        store, store_key = root / "store", root / "store.key"
        generate_key_file(store_key)
        repo = VersionStore(open_store(str(store)), Keyring.from_files([store_key]), node="t")
        repo.init()
        upload_artifact(root / "arts" / "v1", repo, public, now=0.0)
        repo.mark_committed(Ref(version, 1, "2026-11-29T00:00:00Z"))
        raw = root / "raw"
        _raw_files(raw, user, other)
        yield World(root, synth, raw, ckpt, root / "arts", store, store_key, user, other,
                    third, version)


# -- opening every file the way it is stored ------------------------------------------------

def _plain(path: Path, data_key: bytes) -> bytes:
    blob = path.read_bytes()
    return unseal(blob, data_key) if is_sealed(blob) else blob


def _values(data: bytes, name: str) -> list[str]:
    """Every cell / element of a table-like file, as strings; [] for other formats."""
    fmt = format_of(name)
    if fmt == "parquet":
        table = pq.read_table(pa.BufferReader(data))
        return [str(v) for col in table.columns for v in col.to_pylist()]
    if fmt == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return [str(v) for k in npz.files for v in npz[k].ravel().tolist()]
    if fmt in ("csv", "tsv"):
        import csv

        sep = "\t" if fmt == "tsv" else ","
        return [v for row in csv.reader(io.StringIO(data.decode(), newline=""), delimiter=sep)
                for v in row]
    return []


def _store_plaintexts(world: World) -> Iterator[tuple[str, bytes]]:
    from replication.keys import Keyring
    from replication.repo import VersionStore
    from replication.store import open_store

    repo = VersionStore(open_store(str(world.store)), Keyring.from_files([world.store_key]),
                        node="t")
    names = {b.sha256: b.path for v in repo.list_versions() for b in repo.get_record(v).files}
    for digest in repo.list_blobs():
        yield names.get(digest, digest), b"".join(repo.read_blob(digest))


def _everything(world: World) -> Iterator[tuple[str, bytes]]:
    """(name, plaintext) of every file of every place, store blobs decrypted."""
    key = world.data_key()
    for place in (world.synth, world.raw, world.ckpt, world.arts, world.store):
        for path in sorted(p for p in place.rglob("*") if p.is_file()):
            yield str(path), _plain(path, key)
    yield from _store_plaintexts(world)


def _holders(world: World, user: str) -> list[str]:
    """Files whose plaintext, cells or array elements name ``user`` (clear or pseudonym)."""
    needles = {user, world.pseudonym(user)}
    out = []
    for name, data in _everything(world):
        if any(n.encode() in data for n in needles) or needles & set(_values(data, name)):
            out.append(name)
    return out


def _rows(world: World) -> dict[str, int]:
    key = world.data_key()
    counts = {}
    for name in ("events.parquet", "queries.parquet"):
        counts[name] = pq.read_table(pa.BufferReader(_plain(world.synth / name, key))).num_rows
    for path in (world.ckpt / "sequences.npz", world.arts / "v1" / "histories.npz"):
        with np.load(io.BytesIO(_plain(path, key))) as npz:
            counts[path.name] = len(npz["user_ids"])
    return counts


def _sessions(world: World, user: str) -> set[int]:
    table = pq.read_table(pa.BufferReader(_plain(world.synth / "events.parquet",
                                                 world.data_key())))
    frame = table.to_pandas()
    return set(frame.loc[frame["user_id"] == user, "session_id"].tolist())


# -- the proof -------------------------------------------------------------------------------

def test_forget_removes_the_user_from_every_stored_file(env: World) -> None:
    from export.keys import public_key_path
    from export.manifest import read_manifest
    from export.verify import verify_artifact
    from replication.keys import Keyring
    from replication.repo import VersionStore
    from replication.store import open_store
    from serving.users import UserGate, UserPrivacy

    world = env
    pseudonym = world.pseudonym(world.user)
    assert len(_holders(world, world.user)) >= 7  # raw, checkpoint, artifact, store blob
    before, sessions = _rows(world), _sessions(world, world.user)
    assert sessions
    other_csv = (world.raw / "events.csv").read_bytes().split(b"\r\n", 2)[2]

    code, out, err = _invoke("forget", world.user, *world.places)

    # The store's committed version is never rewritten in place: found, and left pending.
    assert code == EXIT_PENDING, err
    assert out["status"] == "pending" and out["pseudonym"] == pseudonym
    assert [s["version"] for s in out["stored_pending"]] == [world.version]
    assert "PENDING" in err and world.version in err and world.user not in err + str(out)
    assert out["artifacts_amended"] == 1 and out["rows_removed"] > len(sessions)
    holders = _holders(world, world.user)
    assert holders and all(h.endswith("histories.npz") for h in holders), holders

    # Other users untouched: exactly the user's rows went.
    after = _rows(world)
    assert after["sequences.npz"] == before["sequences.npz"] - 1
    assert after["histories.npz"] == before["histories.npz"] - 1
    assert after["events.parquet"] < before["events.parquet"]
    assert not _sessions(world, world.user) and _sessions(world, world.other)
    assert (world.raw / "events.csv").read_bytes().endswith(other_csv)
    assert (world.raw / "ml.inter").read_text().count(world.other) == 2
    # Sealed files stay sealed; the amended artifact verifies and names the ticket only.
    assert is_sealed((world.synth / "events.parquet").read_bytes())
    assert is_sealed((world.ckpt / "sequences.npz").read_bytes())
    verify_artifact(world.arts / "v1", public_key_path())
    amendments = (world.arts / "v1" / "amendments.json").read_text()
    assert out["ticket"] in amendments and pseudonym not in amendments
    # The served version answers the user's id as unknown from now on (the register says so).
    gate = UserGate.for_version(read_manifest(world.arts / "v1"), UserPrivacy())
    assert gate.stored_id(world.user) == pseudonym and pseudonym in gate.forgotten()[1]

    # Retire the stored version (roll off it, delete it), then forget again: done.
    repo = VersionStore(open_store(str(world.store)), Keyring.from_files([world.store_key]),
                        node="t")
    repo.delete_record(world.version)
    for digest in repo.list_blobs():
        repo.delete_blob(digest)
    code, again, err = _invoke("forget", world.user, *world.places)
    assert code == EXIT_OK, err
    assert again["status"] == "done" and again["ticket"] == out["ticket"] and again["resumed"]
    assert _holders(world, world.user) == []
    assert _holders(world, world.other)  # the others are all still there

    # What was recorded names the pseudonym, never the clear id; the chain verifies.
    state = world.root / "state"
    for name in ("forget.jsonl", "audit.jsonl"):
        data = (state / name).read_bytes()
        assert pseudonym.encode() in data and world.user.encode() not in data
    log = AuditLog(state / "audit.jsonl")
    assert log.check().ok
    forgets = [e for e in log.entries() if e.action == "data.forget" and e.target == pseudonym]
    assert forgets[-1].target == pseudonym and forgets[-1].role == "operator"
    assert forgets[0].details["rows_removed"] == out["rows_removed"]
    request = json.loads((state / "forget.jsonl").read_text().splitlines()[-1])
    assert request["status"] == "done"
    assert set(request["versions"]) == {world.version, f"checkpoint:{world.ckpt}"}


def test_the_next_training_leaves_the_forgotten_user_out(env: World, tmp_path: Path) -> None:
    from training.pipeline import load_protected
    from training.protection import DataProtection

    code, _, err = _invoke("forget", env.third, "--data", str(tmp_path))
    assert code == EXIT_OK, err
    raw, _ = load_protected(str(env.synth), None, DataProtection())
    users = set(raw.interactions["user_id"])
    assert env.third not in users and env.other in users


def test_an_unknown_user_is_recorded_and_said_so(env: World) -> None:
    code, out, err = _invoke("forget", "nobody-at-all", "--data", str(env.raw))
    assert code == EXIT_OK and out["status"] == "done" and out["found"] is False
    assert "not found" in err and "recorded" in err
    register = (env.root / "state" / "forget.jsonl").read_text()
    assert out["pseudonym"] in register and "nobody-at-all" not in register


def test_refused_without_the_pseudonym_key_while_artifacts_hold_pseudonyms(
        env: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECDRILL_PSEUDONYM_KEY", str(env.root / "gone.key"))
    register = env.root / "state" / "forget.jsonl"
    before = register.read_bytes() if register.exists() else b""
    code, _, err = _invoke("forget", env.other, "--artifacts", str(env.arts))
    assert code == EXIT_USAGE
    assert "pseudonym key" in err and "gone.key" in err and "nothing was changed" in err
    assert (register.read_bytes() if register.exists() else b"") == before
    assert not (env.root / "gone.key").exists()


def test_a_missing_place_is_bad_usage(tmp_path: Path) -> None:  # before any key is read
    code, _, err = _invoke("forget", "u1", "--data", str(tmp_path / "nowhere"))
    assert code == EXIT_USAGE and "nowhere" in err and "does not exist" in err


# -- the pure parts ----------------------------------------------------------------------------

def test_text_tables_keep_every_other_line_byte_for_byte() -> None:
    data = b'user_id,note\n7,"x\ny"\n8,"a,b"\n7,z\n'
    assert without_users(data, "csv", frozenset({"7"})) == (b'user_id,note\n8,"a,b"\n', 2)
    assert without_users(data, "csv", frozenset({"9"})) == (data, 0)


def test_npz_sequences_lose_the_users_whole_sequence() -> None:
    buf = io.BytesIO()
    np.savez(buf, user_ids=np.array(["a", "b", "c"]), flat=np.arange(6), offsets=[2, 3])
    new, removed = without_users(buf.getvalue(), "npz", frozenset({"b"}))
    with np.load(io.BytesIO(new)) as npz:
        assert removed == 1 and npz["user_ids"].tolist() == ["a", "c"]
        assert np.split(npz["flat"], npz["offsets"])[1].tolist() == [3, 4, 5]
    assert inspect_bytes(new, "npz", frozenset({"b"})).rows == 0


def test_nothing_found_plans_nothing() -> None:
    plan = plan_forget(Scan((), (), (), (), 3), None)
    assert plan.complete and not plan.found and plan.versions == ()


def test_anything_that_cannot_be_scrubbed_keeps_the_request_pending() -> None:
    plan = plan_forget(Scan((), (), (), (Blocked("x.json", "holds the pseudonym"),), 1), None)
    assert not plan.complete and plan.found
