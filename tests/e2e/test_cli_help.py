"""The umbrella CLI loads a stage only when its command runs: help lists every stage without
importing torch, and a stage command still reaches its real implementation."""

from __future__ import annotations

import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recdrill", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_help_lists_every_stage_without_loading_the_heavy_ones() -> None:
    proc = _run("--help")
    assert proc.returncode == 0, proc.stderr
    for name in ("serve", "demo", "data", "export", "replication", "bench", "drill"):
        assert f" {name} " in proc.stdout
    probe = ("import sys, recdrill.cli; "
             "print(sorted(m for m in ('torch', 'transformers', 'ray') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"  # nothing heavy on import


def test_a_stage_command_runs_its_real_cli() -> None:
    proc = _run("drill", "list")
    assert proc.returncode == 0, proc.stderr
    assert "frontdoor-grpc" in proc.stdout and "node-kill" in proc.stdout


def test_replication_speaks_the_same_through_the_umbrella(tmp_path: object) -> None:
    from pathlib import Path

    audit = Path(str(tmp_path)) / "audit.jsonl"
    audit.write_text('{"not": "an entry"}\n')
    args = ["replication", "audit", "verify", "--audit", str(audit)]
    alone = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                           timeout=120, check=False)
    umbrella = _run(*args)
    assert alone.returncode == umbrella.returncode == 6  # AUDIT_BROKEN, not a traceback
    assert umbrella.stdout == alone.stdout and '"AuditChainBroken"' in umbrella.stdout
