"""Load a scenario YAML into a validated :class:`~drills.scenario.Scenario`.

Every error names the file, the 1-based line and column, the dotted field path and what was
expected; all errors of a file are reported together, one per line, in one ``ScenarioError``.

Example:
    >>> parse_scenario("title: t\\nload: {rate_rps: 50, duration_s: 20}\\n"
    ...                "method: [{fault: kill-replica, at_s: 8}]\\n"
    ...                "steady_state_hypothesis: {slos: [{kind: success_ratio, min: 0.999}]}\\n"
    ...                ).fault_names()
    ['kill-replica']
    >>> parse_scenario("title: t\\nload: {rate_rps: -1, duration_s: 20}\\n", "s.yaml")
    Traceback (most recent call last):
    ...
    drills.errors.ScenarioError: s.yaml:1:1: steady_state_hypothesis: field required
    s.yaml:1:1: method: field required
    s.yaml:2:8: load.rate_rps: Input should be greater than 0 (found -1)
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from drills.errors import ScenarioError
from drills.scenario import Scenario

__all__ = ["load_scenario", "parse_scenario"]

_Key = str | int
_Path = tuple[_Key, ...]
_MERGE = "tag:yaml.org,2002:merge"
# the first value a whole-model message cites: 'x' (a repr) or key=value
_CITED = re.compile(r"'([^']*)'|\b([a-z_]+)=([^\s,;)]+)")


@dataclass(frozen=True)
class _Where:
    line: int
    column: int
    node: yaml.Node


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate the scenario file at ``path``.

    Example:
        >>> from drills.catalog import SCENARIO_DIR
        >>> load_scenario(SCENARIO_DIR / "replica-kill.yaml").title
        'replica-kill'
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ScenarioError(f"{path}: no such scenario file; give an existing path or a "
                            "catalog name (recdrill drill list)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file: {exc}") from exc
    return parse_scenario(text, str(path))


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Validate scenario YAML ``text``; ``source`` names it in error messages.

    Example:
        >>> try:
        ...     parse_scenario("- fault: kill-node", "list.yaml")
        ... except ScenarioError as exc:
        ...     print(str(exc)[:46])
        list.yaml:1:1: the top level must be a mapping
    """
    root, data, problems = _compose(text, source)
    index: dict[_Path, _Where] = {}
    _index(root, (), _Where(1, 1, root), index, set())
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems += _explain(exc.errors(), index)
    if problems:
        problems.sort(key=lambda p: (p[0].line, p[0].column))
        raise ScenarioError("\n".join(f"{source}:{where.line}:{where.column}: {message}"
                                      for where, message in problems))
    return scenario


def _compose(text: str, source: str) -> tuple[yaml.MappingNode, Any, list[tuple[_Where, str]]]:
    """The document's node tree, its data, and its duplicate keys."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        duplicates = [] if node is None else _duplicates(node, (), set())
        data = None if node is None else loader.construct_document(node)
    except RecursionError:  # PyYAML composes and constructs recursively
        raise ScenarioError(f"{source}: YAML nested too deeply to read; a scenario needs a few "
                            "levels of mappings and lists") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            context = (f" ({exc.context} started at line {exc.context_mark.line + 1}, "
                       f"column {exc.context_mark.column + 1})")
        raise ScenarioError(f"{where}: YAML syntax error: {exc.problem or exc.context}"
                            f"{context}") from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = (f"#x{exc.character:04x}" if isinstance(exc.character, int)
                else repr(exc.character))
        raise ScenarioError(f"{source}:{line}:{column}: YAML error: character {char} is not "
                            f"allowed in YAML ({exc.reason}); remove it") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: YAML error: {' '.join(str(exc).split())}") from exc
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise ScenarioError(f"{source}: the file is empty (or only comments); expected a mapping "
                            "of scenario fields (title, load, method, steady_state_hypothesis, ...)")
    if not isinstance(node, yaml.MappingNode):
        found = "a list" if isinstance(node, yaml.SequenceNode) else f"the scalar {data!r}"
        raise ScenarioError(f"{source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: "
                            "the top level must be a mapping of scenario fields (title, load, "
                            f"method, steady_state_hypothesis, ...); found {found}")
    return node, data, duplicates


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _duplicates(node: yaml.Node, path: _Path, seen: set[int]) -> list[tuple[_Where, str]]:
    """Keys written twice in one mapping (YAML would silently keep the last), before merging."""
    if id(node) in seen:
        return []
    seen.add(id(node))
    problems: list[tuple[_Where, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if key.tag == _MERGE:  # `<<: *base` is overridden on purpose
                problems += _duplicates(value, path, seen)
                continue
            name = str(key.value)
            line, column = _mark(key)
            if name in first:
                message = (f"{_dotted((*path, name))}: duplicate key {name!r} (first at line "
                           f"{first[name]}); keep one")
                problems.append((_Where(line, column, value), message))
            first.setdefault(name, line)
            problems += _duplicates(value, (*path, name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicates(item, (*path, i), seen)
    return problems


def _index(node: yaml.Node, path: _Path, where: _Where, out: dict[_Path, _Where],
           active: set[int]) -> None:
    """Map each field path to where it is written (a key's mark; an item's own mark)."""
    out[path] = where
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        # after construction merged keys come first; the last of a key wins, as in the data
        latest = {str(key.value): (key, value) for key, value in node.value}
        for name, (key, value) in latest.items():
            _index(value, (*path, name), _Where(*_mark(key), value), out, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), _Where(*_mark(item), item), out, active)
    active.discard(id(node))


def _explain(errors: list[ErrorDetails], index: dict[_Path, _Where]) -> list[tuple[_Where, str]]:
    locs = [_resolve(error, index) for error in errors]
    merged: dict[tuple[_Path, str], tuple[_Where, list[str], str]] = {}
    for error, (path, where) in zip(errors, locs, strict=True):
        if error["type"] == "too_short" and any(
                len(other) > len(path) and other[:len(path)] == path for other, _ in locs):
            continue  # the tuple lost its items to errors already reported
        if error["type"] == "value_error":
            path, where = _narrow(error, path, where, index)
        elif error["type"].startswith("union_tag_"):
            tag = str((error.get("ctx") or {}).get("discriminator", "kind")).strip("'")
            path = (*path, tag)
            where = index.get(path, where)
        text, found = _message(error, path, where)
        where, texts, _ = merged.setdefault((path, _kind(error)), (where, [], found))
        if text not in texts:
            texts.append(text)  # one line for all members of a union
    return [(where, f"{_dotted(path)}: {' or '.join(texts)}{found}")
            for (path, _), (where, texts, found) in merged.items()]


def _kind(error: ErrorDetails) -> str:
    return "type" if error["type"].endswith(("_type", "_parsing")) else error["type"]


def _resolve(error: ErrorDetails, index: dict[_Path, _Where]) -> tuple[_Path, _Where]:
    """The YAML path and place of a pydantic ``loc``: union tags skipped, a missing field's
    place is its parent's, and union-member suffixes (``equals.bool``) dropped."""
    path: _Path = ()
    tag_skipped: _Path | None = None
    loc = error["loc"]
    for i, step in enumerate(loc):
        node = index[path].node
        if isinstance(node, yaml.MappingNode):
            if tag_skipped != path and _tag_of(node) == step:
                tag_skipped = path  # pydantic names the union member it validated against
                continue
            step = str(step)
        if (*path, step) in index:
            path = (*path, step)
        elif error["type"] == "missing" and i == len(loc) - 1:
            return (*path, step), index[path]
        else:
            break
    return path, index[path]


def _tag_of(node: yaml.MappingNode) -> str | None:
    for key, value in node.value:
        if key.value == "kind" and isinstance(value, yaml.ScalarNode):
            return str(value.value)
    return None


def _narrow(error: ErrorDetails, path: _Path, where: _Where,
            index: dict[_Path, _Where]) -> tuple[_Path, _Where]:
    """Point a whole-model error at the field whose value its message cites, if any
    (``names phase 'x'``, ``at_s=2.0``); else it stays on the object."""
    cited = _CITED.search(str(error["msg"]))
    if cited is None:
        return path, where
    quoted, key, value = cited.groups()
    for candidate, place in index.items():
        if len(candidate) <= len(path) or candidate[:len(path)] != path:
            continue
        node = place.node
        if not isinstance(node, yaml.ScalarNode):
            continue
        if quoted is not None and node.value == quoted:
            return candidate, place
        if key is not None and candidate[-1] == key and _same(node.value, value):
            return candidate, place
    return path, where


def _same(written: str, cited: str) -> bool:
    if written == cited:
        return True
    try:
        return float(written) == float(cited)
    except ValueError:
        return False


def _message(error: ErrorDetails, path: _Path, where: _Where) -> tuple[str, str]:
    """What was expected, and `` (found ...)`` where the offending value is the node's."""
    kind, msg = error["type"], str(error["msg"])
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "field required", ""
    if kind == "extra_forbidden":
        allowed = _fields_at(error["loc"][:-1])
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"unknown field {path[-1]!r}{hint}", ""
    if kind == "union_tag_invalid":
        tags = ", ".join(_tags_at(error["loc"]))
        return f"unknown kind; expected one of {tags}", f" (found {ctx.get('tag')!r})"
    if kind == "union_tag_not_found":
        return f"field required; one of {', '.join(_tags_at(error['loc']))}", ""
    if kind == "value_error":
        return msg.removeprefix("Value error, "), ""
    return msg, f" (found {_found(where.node)})"


def _found(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:str":
        return repr(node.value)
    return str(node.value)


def _type_at(loc: tuple[_Key, ...]) -> Any:
    """The declared type at a pydantic ``loc`` (None when it cannot be followed)."""
    tp: Any = Scenario
    for step in loc:
        tp = _unwrap(tp, step)
        if tp is None:
            return None
    return tp


def _fields_at(loc: tuple[_Key, ...]) -> list[str]:
    """The field names of the model at ``loc`` (for 'unknown field' hints), if resolvable."""
    tp = _unwrap(_type_at(loc), None)
    return sorted(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _tags_at(loc: tuple[_Key, ...]) -> list[str]:
    """The ``kind`` tags a discriminated union at ``loc`` accepts."""
    tp = _type_at(loc)
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    tags: list[str] = []
    for member in typing.get_args(tp):
        kind = getattr(member, "model_fields", {}).get("kind")
        tags += [] if kind is None else [str(t) for t in typing.get_args(kind.annotation)]
    return tags


def _unwrap(tp: Any, step: _Key | None) -> Any:
    """One step down a type: a model's field, a tuple's item, a union's tagged member."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0], step)
        for member in members:
            kind = getattr(member, "model_fields", {}).get("kind")
            if kind is not None and step in typing.get_args(kind.annotation):
                return member
        return None
    if step is None:
        return tp
    if isinstance(step, int):
        args = typing.get_args(tp)
        return args[0] if origin in (tuple, list) and args else None
    if isinstance(tp, type) and issubclass(tp, BaseModel) and step in tp.model_fields:
        return tp.model_fields[step].annotation
    return None


def _dotted(path: _Path) -> str:
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif not step or not step.isprintable() or step.strip() != step:
            out += f"[{step!r}]"  # a key with line breaks or blanks would blur the message
        else:
            out += f".{step}" if out else step
    return out or "(top level)"
