"""Wire schemas of the serving API (pydantic): what clients send and what they get back.

Unknown fields are rejected and types are strict (``"k": "5"`` is an error, not 5), so a
typo never silently changes an answer. A number without a fraction is an integer, as JSON
Schema says (``"k": 5.0`` is 5; ``5.5`` is an error): what /openapi.json calls valid is.

Example:
    >>> RecommendRequest.model_validate({"history": ["i1", "i2"], "k": 3}).k
    3
"""

from __future__ import annotations

import reprlib
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from serving.errors import InvalidRequest

__all__ = [
    "MAX_HISTORY",
    "MAX_K",
    "MAX_VALID_BODY_BYTES",
    "AdminAnswer",
    "ErrorBody",
    "FeedbackRequest",
    "FeedbackResponse",
    "FeedbackStats",
    "Health",
    "Item",
    "PromoteRequest",
    "RecommendRequest",
    "RecommendResponse",
    "SearchRequest",
    "SearchResponse",
    "TallyBody",
    "VersionRequest",
    "describe_validation_error",
    "parse_feedback",
    "parse_request",
    "parse_search",
]

MAX_K = 100
MAX_HISTORY = 1000
MAX_QUERY_CHARS = 1000  # longer is refused; within it, what the encoder cannot read is cut
_MAX_ID_CHARS = 256  # a user or item id
#: The largest body the schemas admit, every character written as a 6-byte ``\uXXXX`` escape,
#: plus room for the other fields: the HTTP body limit is this, so no schema-valid request is
#: ever refused for its size (and any body over it necessarily breaks the schema).
MAX_VALID_BODY_BYTES = MAX_HISTORY * (_MAX_ID_CHARS * 6 + 3) + 3 * 256 * 6 + MAX_QUERY_CHARS * 6 \
    + 4096
_MAX_PROBLEMS = 5  # an error message names this many, then counts the rest
_FOUND = reprlib.Repr()  # depth-safe and short (keyword arguments need Python 3.12)
_FOUND.maxlevel, _FOUND.maxstring, _FOUND.maxother = 3, 60, 60


def _integral(value: Any) -> Any:
    # JSON Schema's "integer" includes 5.0; json parsers hand it over as a float.
    return int(value) if isinstance(value, float) and value.is_integer() else value


_Int = Annotated[StrictInt, BeforeValidator(_integral)]
_ItemId = Annotated[StrictStr, Field(min_length=1, max_length=_MAX_ID_CHARS)]
_USER: dict[str, Any] = {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}}
_HISTORY: dict[str, Any] = {"required": ["history"],
                            "properties": {"history": {"type": "array"}}}


class RecommendRequest(BaseModel):
    """Recommend for a known user (their history from the artifact) or for a given history."""

    # The schema says what the validator enforces: exactly one of them (null counts as absent).
    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra={"oneOf": [_USER, _HISTORY]})

    user_id: StrictStr | None = Field(None, min_length=1, max_length=256,
                                      description="A user known to the model version.")
    history: list[_ItemId] | None = Field(
        None, min_length=1, max_length=MAX_HISTORY,
        description="Item ids, oldest first; only the newest max_seq_len are used.")
    k: _Int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    exclude_seen: StrictBool = Field(True, description="Leave out items already in the history.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RecommendRequest:
        if (self.user_id is None) == (self.history is None):
            raise ValueError("give exactly one of user_id or history")
        return self


class SearchRequest(BaseModel):
    """Search the catalogue by text; with a user_id or a history, personalised by it."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={
        "not": {"allOf": [_USER, _HISTORY]}})

    query: StrictStr = Field(..., min_length=1, max_length=MAX_QUERY_CHARS,
                             json_schema_extra={"pattern": r"\S"},
                             description="What the shopper typed (not blank). Text beyond the "
                                         "encoder's token limit is cut and the answer says "
                                         "truncated: true.")
    k: _Int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    user_id: StrictStr | None = Field(None, min_length=1, max_length=256,
                                      description="Personalise by this known user's history "
                                                  "(at most one of user_id, history).")
    history: list[_ItemId] | None = Field(
        None, min_length=1, max_length=MAX_HISTORY,
        description="Personalise by these item ids, oldest first (at most one of user_id, "
                    "history).")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("expected some text, found only whitespace")
        return query

    @model_validator(mode="after")
    def _at_most_one_source(self) -> SearchRequest:
        if self.user_id is not None and self.history is not None:
            raise ValueError("give at most one of user_id or history")
        return self


class Item(BaseModel):
    """One recommended item."""

    item_id: str
    title: str
    score: float


class RecommendResponse(BaseModel):
    """The answer; ``degraded`` means the fallback tier answered, not the model."""

    items: list[Item]
    model_version: str
    degraded: bool
    replica: str
    node: str


class SearchResponse(BaseModel):
    """Search results; ``degraded``: BM25 answered, not the encoder; ``truncated``: the query
    was longer than the encoder reads; ``personalised``: a history was blended in."""

    items: list[Item]
    model_version: str
    degraded: bool
    truncated: bool
    personalised: bool
    replica: str
    node: str


class FeedbackRequest(BaseModel):
    """Which recommended item the user took: the answer's version and items, and the item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: StrictStr = Field(..., min_length=1, max_length=256,
                                     description="model_version of the answer shown.")
    items: list[_ItemId] = Field(..., min_length=1, max_length=MAX_K,
                                   description="The answer's item ids, best first.")
    item_id: StrictStr = Field(..., min_length=1, max_length=256,
                               description="The item the user took (a hit if in items[:10]).")


class FeedbackResponse(BaseModel):
    """Feedback counted; ``known``: the version is one this replica serves or served."""

    recorded: bool
    model_version: str
    known: bool


class TallyBody(BaseModel):
    """Feedback on one version: answers shown and hits (taken item in the top 10)."""

    shown: int
    hits: int


class FeedbackStats(BaseModel):
    """One replica's versions in service and its feedback tallies since it started."""

    replica: str
    stable: str | None
    canary: str | None
    canary_share: float
    tally: dict[str, TallyBody]


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: what was wrong and what to do."""

    error: str


class Health(BaseModel):
    """Readiness / liveness answer."""

    status: str
    model_version: str | None = None
    detail: str | None = None


class VersionRequest(BaseModel):
    """Admin: load (reload) a version; None means the store's current one."""

    model_config = ConfigDict(extra="forbid")

    version: StrictStr | None = Field(None, description="Version to serve; None = current.")


class AdminAnswer(BaseModel):
    """An admin action done: the version this replica now serves."""

    model_version: str
    replica: str


class PromoteRequest(BaseModel):
    """Admin: load the named version (promote)."""

    model_config = ConfigDict(extra="forbid")

    version: StrictStr = Field(..., description="Version to serve.")


def describe_validation_error(exc: ValidationError) -> str:
    """One part per problem, the first five: ``field: what is wrong (found X)``.

    Bounded whatever the body: a field name or value is cut short and nested values are
    elided (``[[[[...]]]]``), so a message fits a gRPC status and never recurses."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:_MAX_PROBLEMS]:
        where = _clip(".".join(str(x) for x in err["loc"]) or "body")
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg} (found {_clip(_FOUND.repr(err['input']))})"
                     if err["type"] != "missing" else f"{where}: {msg}")
    if len(errors) > _MAX_PROBLEMS:
        parts.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return "; ".join(parts)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


_Body = TypeVar("_Body", bound=BaseModel)


def _parse(model: type[_Body], obj: Any) -> _Body:
    if not isinstance(obj, dict):
        raise InvalidRequest(f"body: expected a JSON object, found {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None


def parse_request(obj: Any) -> RecommendRequest:
    """Validate a decoded JSON body; raises InvalidRequest naming each bad field."""
    return _parse(RecommendRequest, obj)


def parse_search(obj: Any) -> SearchRequest:
    """Validate a decoded search body; raises InvalidRequest naming each bad field.

    Example:
        >>> parse_search({"query": "space sci-fi", "k": 5}).k
        5
    """
    return _parse(SearchRequest, obj)


def parse_feedback(obj: Any) -> FeedbackRequest:
    """Validate a decoded feedback body; raises InvalidRequest naming each bad field.

    Example:
        >>> parse_feedback({"model_version": "v1", "items": ["i1"], "item_id": "i1"}).item_id
        'i1'
    """
    return _parse(FeedbackRequest, obj)
