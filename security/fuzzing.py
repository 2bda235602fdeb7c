"""The harness every fuzzer shares: run a property for a bounded number of generated inputs,
count the cases by label, and report what broke instead of stopping at the first surprise.

A fuzz target is a hypothesis strategy plus a check: the check drives the system with one
input and returns what the case is counted under — its label (an operation, a method, a kind
of input) and its outcome (a status, ``refused``) — or raises when the system misbehaved. Hypothesis shrinks each distinct failure to a small input; the
result lists them with the input that reproduces them and the seed that replays the run.
``hypothesis`` is a dev dependency: import this module only from fuzzers, tests and bench.

Example:
    >>> from hypothesis import strategies as st
    >>> result = run_property("abs", st.integers(),
    ...                       lambda n: ("int", "ok" if abs(n) >= 0 else "negative"),
    ...                       examples=20, seed=1)
    >>> result.total, result.outcomes, result.failures
    (20, {'ok': 20}, ())
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["EXAMPLES_ENV", "SEED_ENV", "SUITE_SEED", "FuzzFailure", "FuzzResult", "TreePath",
           "examples_from_env", "get_at", "hostile_values", "mutated_trees", "run_property",
           "seed_from_env", "tree_paths"]

#: N examples for every fuzzer (HTTP: per operation and phase) in tests and ``recdrill.fuzz``
EXAMPLES_ENV = "RECDRILL_FUZZ_EXAMPLES"
#: replay a run: the seed its result reported ("random": a fresh one, also in the test suite)
SEED_ENV = "RECDRILL_FUZZ_SEED"
#: the bounded run in the test suite replays these cases: a red CI means a change broke
#: something, never that a fresh seed found an old bug; ``python -m recdrill.fuzz`` explores
SUITE_SEED = 20261130

_T = TypeVar("_T")
_MESSAGE_CHARS = 600
TreePath = tuple[str | int, ...]
#: values parsers mishandle: bounds, huge and tiny numbers, look-alike strings, unicode
_HOSTILE = [-1, 0, 1, -0.0, 0.5, 2**31, 2**63, -(2**63), 10**30, 1e308, -1e308, 1e-300, "",
            " ", "0", "1e3", "yes", "null", "NaN", "-Infinity", "ünïcödé", "\u202e", "\x00",
            "a\nb", "🔥" * 40, "x" * 5000, [], {}]


@dataclass(frozen=True)
class FuzzFailure:
    """One distinct misbehaviour: which check, what happened, and the input that shows it.

    Example:
        >>> FuzzFailure("http POST /v1/recommend", "not_a_server_error", "500", "curl ...").check
        'not_a_server_error'
    """

    target: str
    check: str
    message: str
    reproduce: str

    def as_dict(self) -> dict[str, str]:
        return {"target": self.target, "check": self.check, "message": self.message,
                "reproduce": self.reproduce}


@dataclass(frozen=True)
class FuzzResult:
    """What one fuzz target ran: cases per label and per outcome, failures, seconds, and the
    seed that replays it.

    Example:
        >>> FuzzResult("grpc", {"Recommend": 3, "Search": 2}).total
        5
    """

    target: str
    cases: dict[str, int]
    outcomes: dict[str, int] = field(default_factory=dict)
    failures: tuple[FuzzFailure, ...] = ()
    seconds: float = 0.0
    seed: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of a summary (``recdrill.fuzz`` writes a list of these)."""
        return {"target": self.target, "total_cases": self.total, "cases": dict(self.cases),
                "outcomes": dict(self.outcomes), "failures": [f.as_dict() for f in self.failures],
                "seconds": round(self.seconds, 2), "seed": self.seed, "notes": list(self.notes)}

    def summary_line(self) -> str:
        """``target: N cases in S s (a=1, b=2; ok=2, refused=1), F failure(s)``."""
        per = ", ".join(f"{k}={v}" for k, v in sorted(self.cases.items()))
        out = ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return (f"{self.target}: {self.total} cases in {self.seconds:.1f} s ({per}"
                f"{'; ' + out if out else ''}), {len(self.failures)} failure(s)")


def examples_from_env(default: int) -> int:
    """``$RECDRILL_FUZZ_EXAMPLES`` if set, else ``default`` (a bounded run's size)."""
    return int(os.environ.get(EXAMPLES_ENV) or default)


def seed_from_env(default: int | None = None) -> int | None:
    """``$RECDRILL_FUZZ_SEED`` if set (``random``: None), else ``default``; None means a fresh
    seed, reported with the result."""
    value = os.environ.get(SEED_ENV)
    if not value:
        return default
    return None if value.strip().lower() == "random" else int(value)


def run_property(target: str, strategy: SearchStrategy[_T],
                 check: Callable[[_T], tuple[str, str]], *, examples: int,
                 seed: int | None = None) -> FuzzResult:
    """Draw ``examples`` inputs from ``strategy`` and call ``check`` on each: it returns the
    case's ``(label, outcome)``; every distinct exception it raises becomes a shrunk
    ``FuzzFailure``.

    ``seed`` None picks one at random; the result records it, so a failing run replays.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    if examples < 1:
        raise ValueError(f"examples: expected at least 1, found {examples}")
    seed = random.randrange(2**32) if seed is None else seed
    cases: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              report_multiple_bugs=True, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(value: _T) -> None:
        label, outcome = "(failed)", "failed"  # counted too, shrinking included
        try:
            label, outcome = check(value)
        except Exception as exc:
            exc.add_note(f"input: {value!r}"[:_MESSAGE_CHARS * 4])  # even where hypothesis
            raise  # cannot print the example it shrank to
        finally:
            cases[label] += 1
            outcomes[outcome] += 1

    started = time.perf_counter()
    try:
        prop()
        failures: tuple[FuzzFailure, ...] = ()
    except Exception as exc:  # noqa: BLE001 -- what the property found is the result
        failures = tuple(_failure(target, e) for e in _leaves(exc))
    return FuzzResult(target, dict(cases), dict(outcomes), failures,
                      time.perf_counter() - started, seed)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _failure(target: str, exc: BaseException) -> FuzzFailure:
    notes = getattr(exc, "__notes__", [])
    shown = [n for n in notes if n.startswith("input: ")][-1:] or [
        n for n in notes if n.startswith("Falsifying")]
    message = f"{type(exc).__name__}: {exc}"
    return FuzzFailure(target, type(exc).__name__, message[:_MESSAGE_CHARS],
                       "\n".join(shown)[:_MESSAGE_CHARS * 4])


# -- strategies shared by the fuzzers of structured documents (YAML, JSON) -----------------------

def hostile_values() -> SearchStrategy[Any]:
    """A hypothesis strategy of JSON-like values: hostile scalars, random scalars (NaN and
    infinities included), and small nested lists and mappings of them."""
    from hypothesis import strategies as st

    scalars = st.one_of(st.sampled_from(_HOSTILE), st.none(), st.booleans(),
                        st.integers(-(10**30), 10**30), st.floats(), st.text(max_size=30))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
        max_leaves=12)


def tree_paths(value: Any, prefix: TreePath = ()) -> list[TreePath]:
    """Every path into a JSON-like tree (mapping keys, list indices), outermost first.

    Example:
        >>> tree_paths({"a": [1, {"b": 2}]})
        [('a',), ('a', 0), ('a', 1), ('a', 1, 'b')]
    """
    out: list[TreePath] = [prefix] if prefix else []
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        out += tree_paths(child, (*prefix, key))
    return out


def get_at(tree: Any, path: TreePath) -> Any:
    """The value at ``path`` (``tree_paths``' form)."""
    for step in path:
        tree = tree[step]
    return tree


def mutated_trees(documents: list[Any]) -> SearchStrategy[tuple[Any, TreePath, str]]:
    """A hypothesis strategy of ``(document, path, kind)``: a deep copy of one of
    ``documents`` with one change at ``path`` — ``delete`` the entry, ``replace`` it by a
    ``hostile_values`` value, or add an ``unknown-key`` to the nearest mapping."""
    import copy

    from hypothesis import strategies as st

    @st.composite
    def mutate(draw: Any) -> tuple[Any, TreePath, str]:
        doc = copy.deepcopy(draw(st.sampled_from(documents)))
        path = draw(st.sampled_from(tree_paths(doc)))
        kind = draw(st.sampled_from(["delete", "replace", "unknown-key"]))
        if kind == "unknown-key":
            while not isinstance(get_at(doc, path), dict):  # the nearest mapping
                path = path[:-1]
            path = (*path, draw(st.text(min_size=1, max_size=12)))
        parent, key = get_at(doc, path[:-1]), path[-1]
        if kind == "delete":
            parent.pop(key)
        else:
            parent[key] = draw(hostile_values())
        return doc, path, kind

    return mutate()
