"""Fuzzers of a running replica's two wire APIs: schemathesis over the OpenAPI it publishes
(HTTP) and hypothesis over raw and extreme protobuf messages (gRPC).

What counts as a failure:
  * HTTP — any of schemathesis's checks (all on: no 5xx, documented statuses, content types
    and response schemas, schema-invalid data refused, schema-valid data accepted, 405 for
    unsupported methods, responses within ``max_response_time_s``), plus ours: a schema-valid
    recommend or search may be refused (422) only for ids unknown to the model version;
  * gRPC — any status but OK, INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, RESOURCE_EXHAUSTED or
    UNAVAILABLE (INTERNAL and UNKNOWN mean an unhandled error), an error message too long for
    the client to receive, or an OK answer that does not decode as the method's response.

Both need the dev extra (schemathesis, hypothesis); they are imported when a fuzzer runs.

Example:
    >>> result = fuzz_http(endpoint.http_url, examples=20,  # doctest: +SKIP
    ...                    headers={"Authorization": "Bearer admin-token"})
    >>> result.summary_line()  # doctest: +SKIP
    'http: 412 cases in 21.0 s (GET /healthz=12, POST /v1/recommend=140, ...), 0 failure(s)'
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from security.fuzzing import FuzzFailure, FuzzResult, run_property
from serving.catalog import Ranked
from serving.proto import recdrill_pb2 as pb

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["GRPC_ALLOWED", "GRPC_METHODS", "KnownIds", "fuzz_grpc", "fuzz_http", "grpc_cases",
           "known_ids"]

#: method path -> (request, response) message types
GRPC_METHODS: dict[str, tuple[Any, Any]] = {
    "/recdrill.v1.Recommender/Recommend": (pb.RecommendRequest, pb.RecommendResponse),
    "/recdrill.v1.Recommender/Search": (pb.SearchRequest, pb.SearchResponse),
    "/recdrill.v1.Recommender/Feedback": (pb.FeedbackRequest, pb.FeedbackResponse),
    "/recdrill.v1.Health/Check": (pb.HealthCheckRequest, pb.HealthCheckResponse),
}
GRPC_ALLOWED = frozenset({
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE})
_SEMANTIC_422 = ("/v1/recommend", "/v1/search")  # schema-valid, yet naming unknown ids
# schemathesis's defaults, plus 413: the body limit (documented) is in bytes, which no JSON
# Schema can say, so a long enough body is refused whether it is valid or not
_POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
_NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                      "428", "429", "5xx"]
_CALL_TIMEOUT_S = 10.0
_UNKNOWN_METHOD = "/recdrill.v1.Recommender/Nope"  # must answer UNIMPLEMENTED
_registered = False


@dataclass(frozen=True)
class KnownIds:
    """Ids a version knows (``known_ids``): fuzzers mix them in so that some generated
    requests reach the model, not only the validators."""

    items: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


def known_ids(runner: Any, n: int = 5) -> KnownIds:
    """The ``n`` most popular item ids of a version (``runner``: a ``ModelRunner``), and a user
    id when it stores clear ones (not pseudonyms)."""
    catalog = runner.catalog
    popular = catalog.popular[:n]
    items = catalog.items_json(Ranked(popular, np.ones(len(popular), np.float32), True))
    user = catalog.some_user
    return KnownIds(tuple(item["item_id"] for item in items), () if user is None else (user,))


# -- HTTP ---------------------------------------------------------------------------------------

def fuzz_http(base_url: str, *, examples: int, headers: dict[str, str] | None = None,
              ids: KnownIds | None = None, seed: int | None = None,
              max_response_time_s: float = 10.0) -> FuzzResult:
    """Run schemathesis (every phase, every check, positive and negative data, at most
    ``examples`` per operation and phase) against the schema ``base_url`` serves at
    /openapi.json. ``headers`` go with every request (an admin token exercises /admin);
    in half the schema-valid bodies, history items and user ids are swapped for ``ids``
    (``known_ids``), so that they also reach the model."""
    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import StopReason, events, from_schema

    _register_checks()
    checks: dict[str, Any] = {
        "enabled": True, "max_response_time": max_response_time_s,
        "positive_data_acceptance": {"expected-statuses": _POSITIVE_STATUSES},
        "negative_data_rejection": {"expected-statuses": _NEGATIVE_STATUSES}}
    config: dict[str, Any] = {
        "headers": dict(headers or {}),
        "generation": {"mode": "all", "max-examples": examples},
        "checks": checks,
        "workers": 1,
        "operations": [{"include-path": list(_SEMANTIC_422), "checks": {
            **checks, "positive_data_acceptance": {"expected-statuses": [
                *_POSITIVE_STATUSES, "422"]}}}],
    }
    config["seed"] = seed = random.randrange(2**32) if seed is None else seed  # reported
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json",
                                           config=SchemathesisConfig.from_dict(config))
    if ids is not None and ids.items:
        _prefer_known_ids(schema, ids)
    started = time.perf_counter()
    cases: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    failures: dict[tuple[str, str, str], FuzzFailure] = {}
    notes: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, node in event.recorder.cases.items():
                cases[node.value.operation.label] += 1
                interaction = event.recorder.interactions.get(case_id)
                response = None if interaction is None else interaction.response
                statuses["no response" if response is None else str(response.status_code)] += 1
            for results in event.recorder.checks.values():
                for check in results:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    where = failure.operation or event.recorder.label
                    failures.setdefault((where, check.name, failure.title), FuzzFailure(
                        f"http {where}", check.name,
                        f"{failure.title}: {failure.message}".strip(": "),
                        check.failure_info.code_sample))
        elif isinstance(event, events.NonFatalError | events.FatalError):
            error = event.info if isinstance(event, events.NonFatalError) else event.exception
            label = event.label if isinstance(event, events.NonFatalError) else "engine"
            failures.setdefault((label, "error", str(error)[:80]), FuzzFailure(
                f"http {label}", "engine-error", str(error)[:600], ""))
        elif isinstance(event, events.EngineFinished) and event.stop_reason != StopReason.COMPLETED:
            notes.append(f"schemathesis stopped early: {event.stop_reason.value}")
    return FuzzResult("http", dict(cases), dict(statuses), tuple(failures.values()),
                      time.perf_counter() - started, seed, tuple(notes))


def _prefer_known_ids(schema: Any, ids: KnownIds) -> None:
    """Swap, in half the positive cases (the same half for the same body, so shrinking holds),
    the generated history items and user id for ones the version knows: strings for strings,
    so a schema-valid body stays valid."""

    @schema.hook
    def map_case(context: Any, case: Any) -> Any:
        body, meta = case.body, case.meta
        if meta is None or not meta.generation.mode.is_positive or not isinstance(body, dict):
            return case
        rng = random.Random(repr(body))
        if rng.random() < 0.5:
            return case
        swapped = dict(body)
        if isinstance(body.get("history"), list):
            swapped["history"] = [rng.choice(ids.items) if isinstance(x, str) else x
                                  for x in body["history"]]
        if ids.users and isinstance(body.get("user_id"), str):
            swapped["user_id"] = rng.choice(ids.users)
        case.body = swapped
        return case


def _register_checks() -> None:
    """Register ``unknown_ids_only`` once per process (schemathesis keeps a global registry)."""
    global _registered
    if _registered:
        return
    import schemathesis

    @schemathesis.check
    def unknown_ids_only(ctx: Any, response: Any, case: Any) -> bool | None:
        """A schema-valid recommend or search is refused only for ids the version lacks."""
        meta = case.meta
        if (meta is None or not meta.generation.mode.is_positive
                or case.path not in _SEMANTIC_422 or response.status_code != 422):
            return None
        try:
            error = str(response.json().get("error", ""))
        except ValueError:
            error = response.text
        if "unknown" not in error:
            raise AssertionError(f"a schema-valid body was refused with 422 for another reason "
                                 f"than unknown ids: {error[:300]}")
        return True

    _registered = True


# -- gRPC ---------------------------------------------------------------------------------------

def grpc_cases(ids: KnownIds | None = None) -> SearchStrategy[tuple[str, bytes]]:
    """A hypothesis strategy of ``(method, raw request bytes)``: random bytes, and valid
    messages with extreme values (huge and negative k, empty, huge and unicode strings, long
    histories, ``ids`` the version knows), whole or cut short."""
    from hypothesis import strategies as st

    known = [] if ids is None else [*ids.items, *ids.users]
    text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
    strings = st.one_of(text, st.sampled_from(["", " ", "\t\n", "u0", "i1", "ghost", "\u202e",
                                               "🛒" * 50, *known]),
                        st.integers(900, 1100).map(lambda n: "q" * n),
                        st.integers(60_000, 70_000).map(lambda n: "x" * n))
    history = st.one_of(st.lists(strings, max_size=12),
                        st.integers(990, 2000).map(lambda n: [(known or ["i1"])[0]] * n))
    k = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-2, 102))
    messages = {
        "/recdrill.v1.Recommender/Recommend": st.builds(
            lambda u, h, n, e: pb.RecommendRequest(user_id=u, history=h, k=n, **e),
            strings, history, k, st.sampled_from([{}, {"exclude_seen": True},
                                                  {"exclude_seen": False}])),
        "/recdrill.v1.Recommender/Search": st.builds(
            lambda q, n, u, h: pb.SearchRequest(query=q, k=n, user_id=u, history=h),
            strings, k, strings, history),
        "/recdrill.v1.Recommender/Feedback": st.builds(
            lambda v, i, t: pb.FeedbackRequest(model_version=v, items=i, item_id=t),
            strings, history, strings),
        "/recdrill.v1.Health/Check": st.builds(lambda s: pb.HealthCheckRequest(service=s),
                                               strings),
    }
    valid = st.one_of(*(_serialised(name, msg) for name, msg in messages.items()))
    cut = valid.flatmap(lambda c: st.integers(0, max(0, len(c[1]) - 1)).map(
        lambda n: (c[0], c[1][:n])))
    # one branch per method (one_of flattens): about half the cases are raw bytes
    raw = st.one_of(*(st.tuples(st.just(name), st.binary(max_size=256))
                      for name in [*GRPC_METHODS, _UNKNOWN_METHOD]))
    return st.one_of(valid, cut, raw)


def _serialised(method: str, messages: SearchStrategy[Any]) -> SearchStrategy[tuple[str, bytes]]:
    return messages.map(lambda message: (method, message.SerializeToString()))


def fuzz_grpc(target: str, *, examples: int, ids: KnownIds | None = None,
              seed: int | None = None, metadata: Sequence[tuple[str, str]] = ()) -> FuzzResult:
    """Send ``examples`` generated requests (``grpc_cases``) as raw bytes to the server at
    ``target`` (host:port), so malformed protobufs reach it; each answer must be an allowed
    status (``GRPC_ALLOWED``) and an OK one must decode as the method's response."""
    with grpc.insecure_channel(target) as channel:
        calls = {name: channel.unary_unary(name) for name in
                 [*GRPC_METHODS, _UNKNOWN_METHOD]}

        def check(case: tuple[str, bytes]) -> tuple[str, str]:
            method, raw = case
            name = method.rsplit("/", 1)[1]
            try:
                answer = calls[method](raw, timeout=_CALL_TIMEOUT_S, metadata=tuple(metadata))
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
                # the client's own RESOURCE_EXHAUSTED: the server's message was too long to carry
                if code not in GRPC_ALLOWED or "metadata size exceeds" in details:
                    raise AssertionError(f"{method}: {code.name}: {details}") from None
                return name, code.name
            if method not in GRPC_METHODS:
                raise AssertionError(f"{method}: answered OK, expected UNIMPLEMENTED")
            GRPC_METHODS[method][1].FromString(answer)  # DecodeError if the answer is garbage
            return name, "OK"

        return run_property("grpc", grpc_cases(ids), check, examples=examples, seed=seed)
