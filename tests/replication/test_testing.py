"""The helpers ``replication.testing`` ships to tests, benches and drills."""

from __future__ import annotations

import doctest
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from replication import testing
from replication.testing import (
    flip_byte,
    free_port,
    kill_node,
    kill_pids,
    node_processes,
    poll_until,
    port_open,
    wait_until,
)


class _FakeTime:
    """A clock that moves only when slept on, recording every sleep."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_free_port_is_bindable_and_listenable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert port_open(port)
    assert not port_open(port)


def test_wait_until_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, [], "up"])
    t = _FakeTime()
    assert wait_until(lambda: next(answers), 10, 0.5, what="x", clock=t.clock,
                      sleep=t.sleep) == "up"
    assert t.sleeps == [0.5, 0.5, 0.5]


def test_wait_until_raises_timeout_naming_what_it_waited_for() -> None:
    t = _FakeTime()
    with pytest.raises(TimeoutError, match=r"^timed out after 2 s waiting for the job server$"):
        wait_until(lambda: False, 2, 0.5, what="the job server", clock=t.clock, sleep=t.sleep)
    assert t.now == 2 and len(t.sleeps) == 4  # checked at 0, 0.5, 1, 1.5 and at the deadline


def test_the_last_sleep_stops_at_the_deadline() -> None:
    t = _FakeTime()
    assert poll_until(lambda: False, 1.0, 0.75, clock=t.clock, sleep=t.sleep) is None
    assert t.sleeps == [0.75, 0.25]


def test_a_zero_timeout_still_checks_once() -> None:
    assert wait_until(lambda: 7, 0, what="x") == 7
    assert poll_until(lambda: None, 0) is None


def test_ignored_errors_are_not_yet_and_the_last_one_is_named() -> None:
    t = _FakeTime()

    def refuse() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(TimeoutError, match=r"waiting for the app \(last error: "
                                           r"ConnectionRefusedError\('nobody home'\)\)") as info:
        wait_until(refuse, 1, what="the app", ignore=(OSError,), clock=t.clock, sleep=t.sleep)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_other_errors_propagate_at_once() -> None:
    calls = []

    def broken() -> bool:
        calls.append(1)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wait_until(broken, 10, what="x", ignore=(OSError,))
    assert len(calls) == 1


def test_flip_byte_changes_exactly_one_bit(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"\x00" * 8)
    flip_byte(path)
    flip_byte(path, 2)
    assert path.read_bytes() == b"\x00\x00\x01\x00\x00\x00\x00\x01"


def test_kill_pids_kills_the_live_ones_and_skips_the_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert kill_pids([proc.pid]) == [proc.pid]
        assert proc.wait(10) == -9
        assert kill_pids([proc.pid]) == []  # reaped: nothing left to signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_node_not_on_this_host_is_refused_by_name() -> None:
    node_id = "ab" * 28
    assert node_processes(node_id) == []
    with pytest.raises(ProcessLookupError, match="node abababababab: no raylet process"):
        kill_node(node_id)


def test_docstring_examples() -> None:
    result = doctest.testmod(testing, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
