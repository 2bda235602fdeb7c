from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from replication.errors import ConfigError, KeyMissingError
from replication.keys import Keyring, KeySpec, generate_key_file, key_id_of


def test_generated_key_file_is_private_and_loads(tmp_path: Path) -> None:
    key_id = generate_key_file(tmp_path / "k")
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    ring = Keyring.from_files([tmp_path / "k"])
    assert ring.active_id == key_id and ring.encrypting


def test_wrong_length_key_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(base64.b64encode(b"short").decode())
    with pytest.raises(ConfigError, match="32-byte"):
        Keyring.from_files([tmp_path / "k"])


def test_env_keys_first_is_active(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = b"a" * 32, b"b" * 32
    monkeypatch.setenv("X_KEYS", ",".join(base64.b64encode(k).decode() for k in (a, b)))
    ring = Keyring.from_env("X_KEYS")
    assert ring.active_id == key_id_of(a) and ring.get(key_id_of(b)) == b


def test_keyspec_merges_files_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file_id = generate_key_file(tmp_path / "k")
    monkeypatch.setenv("X_KEYS", base64.b64encode(b"e" * 32).decode())
    ring = KeySpec(files=(str(tmp_path / "k"),), env_var="X_KEYS").load()
    assert ring.active_id == file_id and key_id_of(b"e" * 32) in ring.keys


def test_empty_keyring_does_not_encrypt() -> None:
    ring = Keyring()
    assert not ring.encrypting
    with pytest.raises(KeyMissingError):
        ring.active()
