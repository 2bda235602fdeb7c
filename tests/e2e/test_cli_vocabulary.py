"""Every recdrill CLI speaks one language: one flag per environment variable and per concept,
units in every duration flag, and a model version always spelt ``--version``."""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import typer.core
import typer.main

pytestmark = pytest.mark.unit

CLIS = ["bench.cli", "drills.cli", "export.cli", "recdrill.cli", "recdrill.data_cli",
        "recdrill.fuzz", "replication.cli", "serving.cli", "training.cli"]


# typer >= 0.2x carries its own copy of click: duck-type its commands and parameters.
Command = Any
Param = Any


def _commands(module: str) -> Iterator[tuple[str, Command]]:
    app = importlib.import_module(module).app
    root = typer.main.get_command(app)

    def walk(cmd: Command, path: str) -> Iterator[tuple[str, Command]]:
        if isinstance(cmd, typer.core.TyperGroup):
            ctx = typer.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, cmd

    yield from walk(root, module.split(".")[0])


def _options() -> list[tuple[str, Param]]:
    return [(path, p) for m in CLIS for path, cmd in _commands(m)
            for p in cmd.params if p.param_type_name == "option"]


def test_each_environment_variable_has_one_flag() -> None:
    flags: dict[str, set[str]] = defaultdict(set)
    for _, opt in _options():
        if isinstance(opt.envvar, str):
            flags[opt.envvar].add(max(opt.opts, key=len))
    split = {env: names for env, names in flags.items() if len(names) > 1}
    assert not split, f"one environment variable, several flags: {split}"


@pytest.mark.parametrize("flag,env", [
    ("--ray-address", "RAY_ADDRESS"), ("--public-key", "RECDRILL_PUBLIC_KEY"),
    ("--store-key", "RECDRILL_STORE_KEY_FILES"), ("--artifact", "RECDRILL_ARTIFACT"),
    ("--version", "RECDRILL_VERSION"), ("--signing-key", "RECDRILL_SIGNING_KEY"),
])
def test_shared_concepts_have_one_spelling(flag: str, env: str) -> None:
    seen = [(path, opt) for path, opt in _options() if flag in opt.opts]
    assert seen, f"no CLI uses {flag}"
    wrong = [path for path, opt in seen if opt.envvar != env]
    assert not wrong, f"{flag} without ${env} in: {wrong}"
    others = [(path, opt.opts) for path, opt in _options()
              if opt.envvar == env and flag not in opt.opts]
    assert not others, f"${env} under another flag: {others}"


def test_no_retired_spellings() -> None:
    retired = {"--address", "--key-file", "--timeout", "--duration", "--warmup"}
    used = [(path, o) for path, opt in _options() for o in opt.opts if o in retired]
    assert not used, used


def test_duration_flags_carry_their_unit() -> None:
    words = ("time", "timeout", "duration", "interval", "grace", "deadline", "warmup", "step")
    bad = [(path, flag) for path, opt in _options() for flag in opt.opts
           if opt.type_descriptor.annotation in (float, int) and any(w in flag for w in words)
           and not flag.endswith(("-s", "-ms", "-scale"))]
    assert not bad, f"duration flags without a unit: {bad}"


def test_model_version_is_never_positional() -> None:
    positional = [path for m in CLIS for path, cmd in _commands(m) for p in cmd.params
                  if p.param_type_name == "argument" and p.name == "version"]
    assert not positional, positional
