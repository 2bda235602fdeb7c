"""User ids leave training only as pseudonyms: the artifact holds none in clear, serving maps the
caller's id through the same key, refuses a version under another key, and stops answering a
forgotten user within about a second (real export, real onnxruntime, no Ray)."""

from __future__ import annotations

import asyncio
import io
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from export.manifest import build_manifest, read_manifest, write_manifest
from export.signing import SIGNING_METHOD, generate_signing_key, key_id_of, sign_artifact
from security.forget_register import ForgetRegister, ForgetRequest
from security.pseudonym import Pseudonymiser, is_pseudonym
from serving.errors import InvalidRequest, ModelLoadError
from serving.schemas import RecommendRequest
from serving.service import RecommendService, ServiceConfig
from serving.source import DirectorySource
from serving.status import status_of
from serving.users import ForgetWatch, UserPrivacy

CLEAR = tuple(f"shopper-{n:03d}@example.org" for n in range(40))


@dataclass(frozen=True)
class World:
    root: Path  # <root>/<version>/ artifacts
    public_key: Path
    key: Path  # the pseudonym key v1 and v2 were exported with
    other_key: Path  # the one "v-other" was exported with
    checkpoint: Path
    histories: dict[str, list[str]]  # clear id -> item ids the artifact holds for the user


def _checkpoint(seed: int):  # type: ignore[no-untyped-def]
    import torch

    from training.checkpoint import Checkpoint
    from training.clean import SequenceData
    from training.model import ModelConfig, SASRec

    rng = np.random.default_rng(0)
    seqs = tuple(rng.integers(1, 31, size=int(rng.integers(4, 12))) for _ in CLEAR)
    data = SequenceData(tuple(f"i{i}" for i in range(30)), CLEAR, seqs)
    torch.manual_seed(seed)
    model = SASRec(30, ModelConfig(hidden_size=16, num_layers=1, num_heads=2,
                                   max_seq_len=10)).eval()
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)],
                          "title": [f"Title {i}" for i in range(30)], "category": ["c"] * 30})
    return Checkpoint(model, data, items, {"metrics": {}})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from export.package import package_recommender
    from training.checkpoint import save_checkpoint

    base = tmp_path_factory.mktemp("pseudonyms")
    generate_signing_key(base / "k", base / "k.pub")
    key, other = base / "keys" / "pseudonym.key", base / "keys" / "other.key"
    mine, theirs = Pseudonymiser.load(key, create=True), Pseudonymiser.load(other, create=True)
    root = base / "artifacts"
    for seed, (version, p) in enumerate((("v1", mine), ("v2", mine), ("v-other", theirs))):
        package_recommender(_checkpoint(seed), root / version, base / "k", base / "k.pub",
                            version=version, quantize=False, pseudonymiser=p)
    ck = _checkpoint(0)
    save_checkpoint(base / "checkpoint", ck.model, ck.data, ck.items, {"config": {}})
    histories = {u: [f"i{int(i) - 1}" for i in s[:-1]]
                 for u, s in zip(ck.data.user_ids, ck.data.sequences, strict=True)}
    return World(root, base / "k.pub", key, other, base / "checkpoint", histories)


def _service(world: World, register: Path, key: Path | None = None) -> RecommendService:
    privacy = UserPrivacy(str(key or world.key), str(register))
    return RecommendService(DirectorySource(str(world.root), str(world.public_key)),
                            replica="r0", node="n0",
                            # one event loop per request here: no batcher to outlive its loop
                            config=ServiceConfig(users=privacy, batching=False))


def _ask(svc: RecommendService, **request: object) -> dict[str, object]:
    return asyncio.run(svc.recommend(RecommendRequest(k=5, **request)))  # type: ignore[arg-type]


def test_no_file_of_the_artifact_holds_a_clear_user_id(world: World) -> None:
    art = world.root / "v1"
    files = [p for p in art.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"histories.npz", "manifest.json", "items.parquet"}
    for path in files:
        data = path.read_bytes()
        for user in CLEAR:  # numpy stores str arrays as UTF-32: look for both encodings
            assert user.encode() not in data, (path.name, user)
            assert user.encode("utf-32-le") not in data, (path.name, user)
    with np.load(art / "histories.npz", allow_pickle=False) as npz:
        stored = npz["user_ids"].tolist()
    assert not set(stored) & set(CLEAR)
    assert all(is_pseudonym(u) for u in stored) and len(set(stored)) == len(CLEAR)
    assert stored == Pseudonymiser.load(world.key).many(CLEAR)
    assert read_manifest(art).pseudonym_key_id == Pseudonymiser.load(world.key).key_id


def test_serving_answers_by_the_clear_id_as_by_the_history(world: World, tmp_path: Path) -> None:
    svc = _service(world, tmp_path / "forget.jsonl")
    svc.load("v1")
    user = CLEAR[7]
    by_id, by_history = _ask(svc, user_id=user), _ask(svc, history=world.histories[user])
    assert by_id["items"] == by_history["items"] and not by_id["degraded"]
    assert svc.runner.catalog.some_user is None  # no clear id to hand out
    pseudonym = Pseudonymiser.load(world.key).of(user)
    with pytest.raises(InvalidRequest, match="unknown"):  # a pseudonym is not a user id
        _ask(svc, user_id=pseudonym)


@pytest.mark.parametrize("which", ["other", "missing"])
def test_a_version_under_another_key_is_refused_and_the_old_one_keeps_serving(
        world: World, tmp_path: Path, which: str) -> None:
    svc = _service(world, tmp_path / "forget.jsonl")
    svc.load("v1")
    want = read_manifest(world.root / "v-other").pseudonym_key_id
    with pytest.raises(ModelLoadError, match=f"key id {want}.*RECDRILL_PSEUDONYM_KEY"):
        svc.load("v-other")
    assert svc.version == "v1" and _ask(svc, user_id=CLEAR[0])["model_version"] == "v1"
    # The same artifact under a key that is not there at all: refused, saying so.
    svc = _service(world, tmp_path / "forget.jsonl",
                   world.other_key if which == "other" else tmp_path / "none.key")
    with pytest.raises(ModelLoadError, match=f"key id {want}" if which == "other"
                       else "none.key: no key file"):
        svc.load("v1")
    assert not svc.ready


def test_no_key_configured_refuses_by_name(world: World, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECDRILL_KEY_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("RECDRILL_STATE_DIR", str(tmp_path / "state"))
    svc = RecommendService(DirectorySource(str(world.root), str(world.public_key)),
                           replica="r0", node="n0",
                           config=ServiceConfig(users=UserPrivacy(None, str(tmp_path / "f"))))
    with pytest.raises(ModelLoadError, match="no pseudonym key is configured"):
        svc.load("v1")


def test_driver_check_refuses_a_wrong_key_before_deploying(world: World, tmp_path: Path) -> None:
    from serving.config import ServeSettings, resolve_paths
    from serving.deployment import check_artifact

    settings = resolve_paths(ServeSettings(artifact=str(world.root / "v1"),
                                           public_key=str(world.public_key),
                                           pseudonym_key=str(world.other_key)))
    with pytest.raises(ModelLoadError, match="pseudonymised with key id"):
        check_artifact(settings)
    check_artifact(settings.model_copy(update={"pseudonym_key": str(world.key)}))


def test_settings_resolve_the_default_key_and_register(world: World, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.config import ServeSettings, resolve_paths

    monkeypatch.setenv("RECDRILL_KEY_DIR", str(world.key.parent))
    monkeypatch.setenv("RECDRILL_STATE_DIR", str(tmp_path / "state"))
    settings = resolve_paths(ServeSettings(artifact=str(world.root / "v1"),
                                           public_key=str(world.public_key)))
    assert settings.pseudonym_key == str(world.key.resolve())
    assert settings.forget_register == str((tmp_path / "state" / "forget.jsonl").resolve())
    users = settings.service_config().users
    assert (users.pseudonym_key, users.forget_register) == (settings.pseudonym_key,
                                                            settings.forget_register)
    with pytest.raises(ValueError, match="pseudonym_key: .* does not exist"):
        resolve_paths(settings.model_copy(update={"pseudonym_key": str(tmp_path / "nope")}))


def _unknown_message(svc: RecommendService, user: str) -> tuple[str, int]:
    with pytest.raises(InvalidRequest) as err:
        _ask(svc, user_id=user)
    return str(err.value).replace(repr(user), "<user>"), status_of(err.value).http


def test_a_forgotten_user_is_answered_as_unknown_within_a_second(world: World,
                                                                 tmp_path: Path) -> None:
    register = ForgetRegister(tmp_path / "forget.jsonl")
    svc = _service(world, register.path)
    svc.load("v1")
    svc.set_canary("v2", 1.0)  # the canary's catalog forgets too
    gone, stays = CLEAR[3], CLEAR[4]
    assert _ask(svc, user_id=gone)["items"]
    users_before = svc.runner.catalog.n_users
    register.record(ForgetRequest.new(Pseudonymiser.load(world.key).of(gone)))
    changed = time.monotonic()
    while True:
        try:
            _ask(svc, user_id=gone)
        except InvalidRequest:
            break
        # the register is looked at once a second; the margin is for a busy CI machine
        assert time.monotonic() - changed < 4.0, "still answered 4 s after the register changed"
        time.sleep(0.05)
    assert _unknown_message(svc, gone) == _unknown_message(svc, "never-seen@example.org")
    assert _unknown_message(svc, gone)[1] == 422
    assert _ask(svc, user_id=stays)["items"]
    assert svc.runner.catalog.n_users == users_before - 1  # dropped from memory, not only hidden
    assert svc.canary_version == "v2"
    fresh = _service(world, register.path)  # loaded after the request: never holds the user
    fresh.load("v2")
    assert fresh.runner.catalog.n_users == len(CLEAR) - 1


def test_forget_watch_looks_at_most_once_per_interval(tmp_path: Path) -> None:
    now = [0.0]
    register = ForgetRegister(tmp_path / "forget.jsonl")
    watch = ForgetWatch(register.path, 1.0, clock=lambda: now[0])
    assert watch.current() == (0, frozenset())
    register.record(ForgetRequest.new("p_" + "a" * 32))
    now[0] = 0.5
    assert watch.current() == (0, frozenset())  # not looked at yet
    now[0] = 1.0
    assert watch.current() == (1, frozenset({"p_" + "a" * 32}))
    with open(register.path, "a") as fh:  # a torn line: the last set read stays
        fh.write("{not json\n")
    now[0] = 2.0
    assert watch.current() == (1, frozenset({"p_" + "a" * 32}))


def test_a_clear_id_artifact_still_serves_by_clear_id_and_forgets(world: World,
                                                                  tmp_path: Path) -> None:
    """Artifacts exported before pseudonymisation (no pseudonym_key_id) keep working."""
    old = tmp_path / "old" / "v0"
    shutil.copytree(world.root / "v1", old, ignore=shutil.ignore_patterns("manifest.json",
                                                                          "model.sig"))
    with np.load(old / "histories.npz") as npz:
        flat, offsets = npz["flat"], npz["offsets"]
    buf = io.BytesIO()
    np.savez(buf, user_ids=np.array(CLEAR, dtype=str), flat=flat, offsets=offsets)
    (old / "histories.npz").write_bytes(buf.getvalue())
    v1 = read_manifest(world.root / "v1")
    write_manifest(old, build_manifest(old, version="v0", kind=v1.kind, io=v1.io, metrics={},
                                       signing={"method": SIGNING_METHOD,
                                                "key_id": key_id_of(world.public_key)}))
    sign_artifact(old, world.root.parent / "k")
    assert b"pseudonym_key_id" not in (old / "manifest.json").read_bytes()
    register = ForgetRegister(tmp_path / "forget.jsonl")
    source = DirectorySource(str(old.parent), str(world.public_key))
    for key in (tmp_path / "no.key", world.key):  # no usable key: still served by clear id
        privacy = UserPrivacy(str(key), str(register.path), check_interval_s=0.0)
        svc = RecommendService(source, replica="r", node="n", config=ServiceConfig(users=privacy))
        svc.load("v0")
        assert _ask(svc, user_id=CLEAR[1])["items"]
    register.record(ForgetRequest.new(Pseudonymiser.load(world.key).of(CLEAR[1])))
    with pytest.raises(InvalidRequest, match="unknown"):  # matched through the key
        _ask(svc, user_id=CLEAR[1])


def test_the_load_generator_replays_clear_ids_from_the_checkpoint_only(world: World) -> None:
    from bench.loadgen.workload import load_workload

    w = load_workload(world.root / "v1", world.checkpoint, pseudonym_key=world.key)
    assert [u.user_id for u in w.users] == list(CLEAR) and w.mode == "user"
    assert w.users[7].history == tuple(world.histories[CLEAR[7]])
    assert all(t is not None for t in w.targets())
    bare = load_workload(world.root / "v1", pseudonym_key=world.key)
    assert bare.mode == "history" and not {u.user_id for u in bare.users} & set(CLEAR)
