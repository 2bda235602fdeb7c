"""Rate stepping decisions and the goals / ratios computed from them (pure)."""

from __future__ import annotations

from bench.loadgen.compare import ContenderRecord, goals, ratios
from bench.loadgen.saturation import SLO, Step, next_rate, saturation, step_passes


def _step(offered: float, p99: float, ok: float = 1.0, good: float | None = None,
          kind: str = "search", p50: float = 1.0) -> Step:
    return Step(offered, offered * ok if good is None else good, ok, p50, p99, p99, 0.1, 0.2,
                True, kind=kind)


def test_step_passes_on_p99_success_and_goodput() -> None:
    slo = SLO(p99_ms=100)
    assert step_passes(_step(100, 50), slo)
    assert not step_passes(_step(100, 150), slo)
    assert not step_passes(_step(100, 50, ok=0.9), slo)
    assert not step_passes(_step(100, 50, good=80), slo)


def test_search_then_refine_then_stop() -> None:
    slo, steps = SLO(), [_step(100, 5), _step(200, 5)]
    assert next_rate(steps, slo, 100, 2, 1000) == 400
    steps.append(_step(400, 500))
    mid = next_rate(steps, slo, 100, 2, 1000)
    assert mid is not None and 280 < mid < 285
    steps.append(_step(mid, 5, kind="refine"))
    steps.append(_step(next_rate(steps, slo, 100, 2, 1000) or 0, 500, kind="refine"))
    assert next_rate(steps, slo, 100, 2, 1000) is None
    assert saturation(steps, slo).offered_rps == mid


def test_max_rate_and_failing_start() -> None:
    assert next_rate([_step(800, 5)], SLO(), 100, 2, 1000) is None
    assert next_rate([_step(100, 500)], SLO(), 100, 2, 1000) == 50
    assert saturation([_step(100, 500)], SLO()) is None


def _rec(name: str, sat: float, p99: float = 10, half: tuple[float, float] = (1, 2),
         double: float | None = None) -> ContenderRecord:
    s = _step(sat, p99)
    return ContenderRecord(name, "http", (s,), s, _step(sat / 2, half[1], p50=half[0], kind="half"),
                           _step(sat * 2, 10, good=double if double is not None else sat, kind="double"))


def test_ratios_and_goals() -> None:
    records = [_rec("flask-torch", 200, p99=50), _rec("fastapi-ort", 2000),
               _rec("recdrill-http", 2400, half=(1, 2.5), double=2300)]
    assert ratios(records)["recdrill-http"] == {"flask-torch": 12.0, "fastapi-ort": 1.2,
                                                "raw-ort": None}
    met = {g.name: (g.measured, g.met) for g in goals(records)}
    assert met["saturation vs flask-torch"] == (12.0, True)
    assert met["saturation vs fastapi-ort"] == (1.2, True)
    assert met["p99/p50 at 50% of saturation"] == (2.5, True)
    assert met["goodput at 2x saturation / saturation"] == (0.958, True)


def test_goals_unmet_or_unmeasured() -> None:
    slow = [_rec("flask-torch", 200, p99=5), _rec("recdrill-http", 600, p99=50, double=100)]
    met = {g.name: g.met for g in goals(slow)}
    assert met["saturation vs flask-torch"] is False  # 3x, and a higher p99
    assert met["goodput at 2x saturation / saturation"] is False
    assert met["saturation vs fastapi-ort"] is None
    assert all(g.met is None for g in goals([_rec("flask-torch", 200)]))
