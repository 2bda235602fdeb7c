"""Raw interaction files sealed at rest: sealed in place, read in memory only, trained on exactly
as clear data, audited; forgotten users left out of training; a changed byte is refused by
name (real files, real training of a tiny model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from security.audit import AuditLog
from security.datadir import data_key, is_sealed_file, read_data, seal_data_dir
from security.forget_register import ForgetRegister, ForgetRequest
from security.pseudonym import Pseudonymiser
from security.sealed import MAGIC
from training.checkpoint import load_checkpoint
from training.errors import ConfigError, DataError
from training.loaders import load_any
from training.model import ModelConfig
from training.pipeline import run_training
from training.protection import DataProtection, Exclusion
from training.train import TrainConfig

TINY = ModelConfig(hidden_size=16, num_layers=1, num_heads=2, max_seq_len=10)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def clear_data(tmp_path: Path) -> Path:
    from training.synthetic import SyntheticConfig, generate

    out = tmp_path / "clear"
    generate(SyntheticConfig(n_items=60, n_users=120, n_categories=4, seed=1), out)
    return out


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "data.key"
    data_key(path, create=True)
    return path


def _sealed_copy(clear: Path, key_file: Path) -> Path:
    sealed = clear.parent / "sealed"
    shutil.copytree(clear, sealed)
    key = data_key(key_file)
    assert key is not None
    seal_data_dir(sealed, key)
    return sealed


def test_seal_data_dir_seals_raw_files_in_place_once(clear_data: Path, key_file: Path) -> None:
    key = data_key(key_file)
    assert key is not None
    before = _snapshot(clear_data)
    done = seal_data_dir(clear_data, key)
    assert [p.name for p in done] == ["events.parquet", "items.parquet", "queries.parquet"]
    after = _snapshot(clear_data)
    assert sorted(after) == sorted(before)  # same names, nothing beside them
    assert after["meta.json"] == before["meta.json"]  # not user data: left as it was
    assert all(after[p.name].startswith(MAGIC) for p in done)
    assert seal_data_dir(clear_data, key) == [] and _snapshot(clear_data) == after
    (clear_data / "more.csv").write_text("user_id,item_id,timestamp\nu1,i1,1\n")
    assert seal_data_dir(clear_data, key) == [clear_data / "more.csv"]


def test_sealed_data_trains_exactly_as_clear_data_and_writes_no_plaintext(
        clear_data: Path, key_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECDRILL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    sealed = _sealed_copy(clear_data, key_file)
    at_rest = _snapshot(sealed)
    plain = load_any(clear_data)
    opened = load_any(sealed, data_key=data_key(key_file))
    pd.testing.assert_frame_equal(plain.interactions, opened.interactions)
    pd.testing.assert_frame_equal(plain.items, opened.items)
    assert (plain.sealed, len(opened.sealed)) == ((), 2)

    protection = DataProtection(data_key=key_file, forget_register=tmp_path / "forget.jsonl")
    config = TrainConfig(max_epochs=2, seed=0, max_time_s=30)
    a = run_training(str(clear_data), tmp_path / "ck-clear", TINY, config, progress=False,
                     protection=protection)
    b = run_training(str(sealed), tmp_path / "ck-sealed", TINY, config, progress=False,
                     protection=protection)
    assert a.results["sasrec"].as_dict() == b.results["sasrec"].as_dict()
    assert _snapshot(sealed) == at_rest  # nothing decrypted was ever written beside the data
    assert b.as_dict()["privacy"] == {"forgotten_users_dropped": 0,
                                      "forgotten_events_dropped": 0, "sealed_inputs": 2,
                                      "sealed_checkpoint": True}
    # The checkpoint of sealed data seals its user ids too, and opens transparently.
    sequences = tmp_path / "ck-sealed" / "sequences.npz"
    assert is_sealed_file(sequences) and not is_sealed_file(tmp_path / "ck-clear" / "sequences.npz")
    assert sorted(_snapshot(tmp_path / "ck-sealed")) == sorted(_snapshot(tmp_path / "ck-clear"))
    users = plain.interactions["user_id"].unique().tolist()
    for name, data in _snapshot(tmp_path / "ck-sealed").items():
        assert not any(u.encode("utf-32-le") in data or u.encode() in data for u in users), name
    x = load_checkpoint(tmp_path / "ck-clear")
    y = load_checkpoint(tmp_path / "ck-sealed", data_key(key_file))
    assert x.data.user_ids == y.data.user_ids
    assert all(np.array_equal(s, t) for s, t in zip(x.data.sequences, y.data.sequences,
                                                     strict=True))
    # Every decryption for training is on the audit chain, by an operator, naming the data.
    reads = [e for e in AuditLog(tmp_path / "audit.jsonl").entries() if e.action == "data.read"]
    assert [(e.role, e.target) for e in reads] == [("operator", str(sealed))]


def test_forgotten_users_are_left_out_of_training(clear_data: Path, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "pseudonym.key"
    p = Pseudonymiser.load(key, create=True)
    events = load_any(clear_data).interactions
    gone = events["user_id"].unique()[:2].tolist()
    register = ForgetRegister(tmp_path / "forget.jsonl")
    for user in gone:
        register.record(ForgetRequest.new(p.of(user)))
    report = run_training(str(clear_data), tmp_path / "ck", TINY,
                          TrainConfig(max_epochs=1, seed=0, max_time_s=30), progress=False,
                          protection=DataProtection(pseudonym_key=key,
                                                    forget_register=register.path))
    dropped = int(events["user_id"].isin(gone).sum())
    assert report.forgotten == Exclusion(2, dropped)
    assert report.as_dict()["privacy"]["forgotten_users_dropped"] == 2
    assert not set(gone) & set(load_checkpoint(tmp_path / "ck").data.user_ids)
    # Registered users but no key to match them: training refuses rather than include them.
    with pytest.raises(ConfigError, match="names 2 user"):
        DataProtection(pseudonym_key=tmp_path / "nope.key",
                       forget_register=register.path).forgotten()


def test_a_changed_byte_or_a_wrong_key_is_refused_naming_the_file(
        clear_data: Path, key_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sealed = _sealed_copy(clear_data, key_file)
    events = sealed / "events.parquet"
    blob = bytearray(events.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    events.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=f"{events}.*authentication failed") as err:
        load_any(sealed, data_key=data_key(key_file))
    assert err.value.file == str(events)
    other = tmp_path / "other.key"
    with pytest.raises(DataError, match="items.parquet.*sealed with key"):
        load_any(sealed / "items.parquet", data_key=data_key(other, create=True))
    monkeypatch.setenv("RECDRILL_DATA_KEY", str(tmp_path / "absent.key"))
    with pytest.raises(DataError, match="items.parquet.*no data key"):
        load_any(sealed / "items.parquet")


def test_sealed_atomic_files_and_a_sealed_checkpoint_on_request(
        tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RecBole atomic files (tab-separated text) seal too; ``seal_checkpoint`` seals the
    checkpoint of clear data, and the load generator still reads it."""
    from bench.loadgen.workload import checkpoint_sequences

    monkeypatch.setenv("RECDRILL_DATA_KEY", str(key_file))
    atomic = tmp_path / "atomic"
    atomic.mkdir()
    rng = np.random.default_rng(0)
    rows = [f"u{u}\ti{int(rng.integers(0, 20))}\t{t}" for u in range(30) for t in range(8)]
    (atomic / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                      + "\n".join(rows) + "\n")
    (atomic / "toy.item").write_text("item_id:token\ttitle:token_seq\n"
                                     + "\n".join(f"i{i}\tCafé {i}" for i in range(20)) + "\n")
    plain = load_any(atomic)
    seal_data_dir(atomic, data_key(key_file) or b"")
    opened = load_any(atomic)  # the key from RECDRILL_DATA_KEY
    pd.testing.assert_frame_equal(plain.interactions, opened.interactions)
    pd.testing.assert_frame_equal(plain.items, opened.items)

    clear = tmp_path / "clear-atomic"
    shutil.copytree(atomic, clear)
    for path in clear.iterdir():  # a clear copy, to train with --seal
        path.write_bytes(read_data(path))
    report = run_training(str(clear), tmp_path / "ck", TINY,
                          TrainConfig(max_epochs=1, seed=0, max_time_s=30), progress=False,
                          protection=DataProtection(seal_checkpoint=True,
                                                    forget_register=tmp_path / "f.jsonl"))
    assert report.sealed_checkpoint and report.sealed_inputs == 0
    assert is_sealed_file(tmp_path / "ck" / "sequences.npz")
    assert set(checkpoint_sequences(tmp_path / "ck")) == set(
        load_checkpoint(tmp_path / "ck").data.user_ids)
