"""A contender server as a child process on 127.0.0.1: start, wait until ready, stop by group.

Each server runs in its own session, so stopping it also stops anything it spawned (uvicorn
workers, and Ray's workers, which sit in process groups of their own inside that session: after
the group, whatever is left of the session is killed); its output goes to a log file whose tail
is shown when it fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from bench.loadgen.errors import ContenderError
from serving.testing import free_port, wait_http_ready

__all__ = ["ServerProcess", "free_port", "renice_session", "session_pids"]


def session_pids(sid: int) -> list[int]:
    """Live processes (other than this one; zombies left out) in session ``sid``, from ``/proc``.

    Example:
        >>> isinstance(session_pids(os.getsid(0)), list)
        True
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)": state ppid pgrp session
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def renice_session(sid: int, niceness: int = 0) -> int:
    """Set every thread of session ``sid`` that runs nicer than ``niceness`` to it; returns how
    many threads changed (Ray starts its workers at nice 15; a contender whose processes run
    at 15 loses the cores to the load generator on a shared machine, one at 0 does not).
    Needs root or CAP_SYS_NICE; without, nothing changes."""
    changed = 0
    for pid in session_pids(sid):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                if os.getpriority(os.PRIO_PROCESS, tid) > niceness:
                    os.setpriority(os.PRIO_PROCESS, tid, niceness)
                    changed += 1
            except (PermissionError, ProcessLookupError):
                continue
    return changed


class ServerProcess:
    """``python -m <module> <args...>`` serving on ``port``; ready when ``health_path`` is 200.

    Example::

        with ServerProcess("bench.contenders.fastapi_ort", ["--artifact", a], log) as server:
            run against server.url
    """

    def __init__(self, module: str, args: list[str], log_path: Path, port: int | None = None,
                 health_path: str = "/healthz", ready_timeout_s: float = 60.0,
                 env: dict[str, str] | None = None, port_flag: str | None = "--port",
                 grace_s: float = 5.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        port_args = [port_flag, str(self.port)] if port_flag else []
        self._argv = [sys.executable, "-m", module, *args, *port_args]
        self._log_path = log_path
        self._health = self.url + health_path
        self._ready_timeout_s = ready_timeout_s
        self._env = {**os.environ, **(env or {})}
        self._grace_s = grace_s
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start the process and poll its health URL until it answers 200."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(self._argv, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, env=self._env)
        try:
            self.wait_ready(self._health, self._ready_timeout_s, self._proc)
        except ContenderError as exc:
            self.stop()
            raise ContenderError(f"{self._argv[2]}: {exc}\n{self.log_tail()}") from None
        return self

    @staticmethod
    def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Poll ``url`` until it answers 200; ContenderError on timeout or if ``proc`` exits."""
        try:
            wait_http_ready(url, timeout_s, proc=proc)
        except (TimeoutError, RuntimeError) as exc:
            raise ContenderError(str(exc)) from None

    @property
    def running(self) -> bool:
        """Whether the server process was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group id)."""
        return None if self._proc is None else self._proc.pid

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s`` (default: the one given at
        construction), then SIGKILL whatever else is left in the server's session."""
        if self._proc is None:
            return
        grace_s = self._grace_s if grace_s is None else grace_s
        if self._proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self._proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._sweep_session(self._proc.pid)

    @staticmethod
    def _sweep_session(sid: int, settle_s: float = 5.0) -> None:
        # Ray's workers outlive a driver killed before it could shut Ray down: give them
        # ``settle_s`` to follow their driver out, then kill what is left.
        deadline = time.monotonic() + settle_s
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        deadline = time.monotonic() + 5.0
        while (left := session_pids(sid)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
