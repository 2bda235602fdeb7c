"""Inspect an audit chain and list every problem, each classified and located (a pure function).

Kinds (``Problem.kind``), errors unless noted:

- ``missing``: there is no log at all.
- ``edited``: a line is not an entry, an entry's hash does not match its content, or an intact
  entry does not link to the one before (it, or the one before, was rewritten and re-hashed).
- ``inserted``: a seq appears twice.
- ``dropped``: seqs are missing inside the chain (or at its start).
- ``reordered``: entries stand out of seq order; names the lines and seqs.
- ``truncated``: the anchor (or ``expected_head``) says the log went further than it does, or
  the last line is torn (a partial entry).
- ``anchor``: the anchor is unreadable or its MAC does not verify (forged, or another key);
  a warning when it cannot be checked because the audit key is absent.
- ``unanchored`` (warning): no anchor, or entries after the anchored one; tail truncation of
  those entries cannot be detected.

Example:
    >>> report = inspect_chain("audit.jsonl", [], AnchorView("absent"), exists=False)
    >>> report.ok, report.problems[0].kind
    (False, 'missing')
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from security.audit_entry import GENESIS, AuditEntry

__all__ = ["AnchorView", "AuditReport", "Kind", "ParsedLine", "Problem", "inspect_chain"]

Kind = Literal["missing", "edited", "inserted", "dropped", "reordered", "truncated", "anchor",
               "unanchored"]
Severity = Literal["error", "warning"]
AnchorState = Literal["absent", "valid", "forged", "unreadable", "unverified"]


@dataclass(frozen=True)
class Problem:
    """One finding: what kind, how bad, where (1-based ``line``, 0 = the file) and which seqs."""

    kind: Kind
    message: str
    line: int = 0
    seqs: tuple[int, ...] = ()
    severity: Severity = "error"

    def describe(self, path: str) -> str:
        """``path:line: kind: message``, the form printed to operators."""
        return f"{path}:{self.line}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class ParsedLine:
    """One line of the log: the entry on it, or why there is none (``torn``: the last line,
    without its newline)."""

    number: int
    entry: AuditEntry | None
    error: str = ""
    torn: bool = False


@dataclass(frozen=True)
class AnchorView:
    """What the reader found in ``<log>.head``: its state, and the seq and hash it claims."""

    state: AnchorState
    seq: int = 0
    hash: str = ""
    detail: str = ""


@dataclass(frozen=True)
class AuditReport:
    """The verdict on one log: ``ok`` unless some problem is an error."""

    path: str
    entries: int
    head: str
    head_seq: int
    anchor: AnchorView
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    def summary(self) -> str:
        """The first error, located, and how many more there are ("" when ``ok``)."""
        if not self.errors:
            return ""
        more = len(self.errors) - 1
        tail = f" (and {more} more: run `recdrill audit verify`)" if more else ""
        return self.errors[0].describe(self.path) + tail

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape ``recdrill audit verify`` prints."""
        return {"ok": self.ok, "path": self.path, "entries": self.entries, "head": self.head,
                "head_seq": self.head_seq, "anchor": asdict(self.anchor),
                "problems": [asdict(p) for p in self.problems]}


def _ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def _span(a: int, b: int) -> str:
    return f"seq {a}" if a == b else f"seqs {a}-{b}"


def _unparsed(lines: Sequence[ParsedLine]) -> list[Problem]:
    out = []
    for ln in lines:
        if ln.entry is not None:
            continue
        if ln.torn:
            out.append(Problem("truncated", f"the last line is a partial entry ({ln.error}): an "
                               "append was cut short (crash) or the file was cut; the next "
                               "append records and removes it", ln.number))
        else:
            out.append(Problem("edited", f"not an audit entry ({ln.error})", ln.number))
    return out


def _canonical(lines: Sequence[ParsedLine]) -> tuple[dict[int, tuple[int, AuditEntry]],
                                                     list[Problem]]:
    """First occurrence of each seq (line, entry); later ones are insertions."""
    first: dict[int, tuple[int, AuditEntry]] = {}
    out = []
    for ln in lines:
        e = ln.entry
        if e is None:
            continue
        if not e.intact():
            out.append(Problem("edited", f"seq {e.seq}: the hash does not match the content: "
                               "the entry was edited after it was written", ln.number, (e.seq,)))
        if e.seq in first:
            out.append(Problem("inserted", f"seq {e.seq} again (first on line "
                               f"{first[e.seq][0]}): an entry was copied or inserted",
                               ln.number, (e.seq,)))
        else:
            first[e.seq] = (ln.number, e)
    return first, out


def _lis_mask(values: Sequence[int]) -> list[bool]:
    """Which positions belong to one longest increasing subsequence."""
    tails: list[int] = []
    tail_at: list[int] = []
    parent = [-1] * len(values)
    for i, v in enumerate(values):
        k = bisect.bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_at.append(i)
        else:
            tails[k], tail_at[k] = v, i
        parent[i] = tail_at[k - 1] if k else -1
    keep = [False] * len(values)
    i = tail_at[-1] if tail_at else -1
    while i != -1:
        keep[i], i = True, parent[i]
    return keep


def _reordered(canon: dict[int, tuple[int, AuditEntry]]) -> list[Problem]:
    """Entries a minimal set of moves would put back in place: one problem per moved entry."""
    in_file = sorted(canon.values(), key=lambda le: le[0])
    seqs = [e.seq for _, e in in_file]
    out = []
    for (number, e), keep in zip(in_file, _lis_mask(seqs), strict=True):
        if not keep:
            at = seqs.index(e.seq)
            before = f"after seq {seqs[at - 1]}" if at else "first"
            out.append(Problem("reordered", f"seq {e.seq} stands {before}: entries were moved "
                               f"(seq order in the file: {seqs[max(0, at - 2):at + 3]})",
                               number, (e.seq,)))
    return out


def _dropped(canon: dict[int, tuple[int, AuditEntry]]) -> list[Problem]:
    present = sorted(canon)
    missing = sorted(set(range(1, present[-1] + 1)) - set(present)) if present else []
    out = []
    for a, b in _ranges(missing):
        after = canon.get(b + 1)
        where = after[0] if after else 0
        out.append(Problem("dropped", f"{_span(a, b)} missing before seq {b + 1}: entries were "
                           "dropped", where, tuple(range(a, b + 1))))
    return out


def _links(canon: dict[int, tuple[int, AuditEntry]]) -> list[Problem]:
    """Intact entries whose ``prev`` does not name the intact entry before them."""
    out = []
    for seq, (number, e) in sorted(canon.items()):
        if not e.intact():
            continue
        if seq == 1 and e.prev != GENESIS:
            out.append(Problem("edited", f"seq 1 does not start from the genesis hash (prev "
                               f"{e.prev[:16]}…): the chain was replaced", number, (1,)))
        before = canon.get(seq - 1)
        if before is not None and before[1].intact() and e.prev != before[1].hash:
            out.append(Problem("edited", f"seq {seq}'s prev {e.prev[:16]}… is not the hash of "
                               f"seq {seq - 1} (line {before[0]}, {before[1].hash[:16]}…): one "
                               "of them was rewritten and re-hashed, or forged",
                               number, (seq - 1, seq)))
    return out


def _against_anchor(canon: dict[int, tuple[int, AuditEntry]], anchor: AnchorView,
                    head_seq: int, last_line: int, exists: bool) -> list[Problem]:
    if anchor.state == "absent":
        if not canon:
            return []
        return [Problem("unanchored", "no anchor beside the log (<log>.head): a cut tail "
                        "cannot be detected (a log from an older recdrill, or the anchor was "
                        "deleted); the next append writes one", 0, severity="warning")]
    if anchor.state == "unreadable":
        return [Problem("anchor", f"the anchor cannot be read: {anchor.detail}")]
    if anchor.state == "forged":
        return [Problem("anchor", f"the anchor's MAC does not verify ({anchor.detail}): it was "
                        "forged, or written with another audit key ($RECDRILL_AUDIT_KEY)")]
    out = []
    if anchor.state == "unverified":
        out.append(Problem("anchor", f"the anchor's MAC was not checked: {anchor.detail}",
                           severity="warning"))
    if anchor.seq > head_seq:
        where = "the log is missing" if not exists else f"the log ends at seq {head_seq}"
        out.append(Problem("truncated", f"the anchor says seq {anchor.seq} "
                           f"({anchor.hash[:16]}…) but {where}: cut from the end: "
                           f"{_span(head_seq + 1, anchor.seq)}", last_line,
                           tuple(range(head_seq + 1, anchor.seq + 1))))
    elif anchor.seq in canon and canon[anchor.seq][1].hash != anchor.hash:
        number, e = canon[anchor.seq]
        out.append(Problem("edited", f"seq {anchor.seq} has hash {e.hash[:16]}… but the anchor "
                           f"says {anchor.hash[:16]}…: the chain was rewritten up to here",
                           number, (anchor.seq,)))
    if anchor.seq < head_seq:
        out.append(Problem("unanchored", f"not covered by the anchor (seq {anchor.seq}): "
                           f"{_span(anchor.seq + 1, head_seq)}; an append was interrupted "
                           "before its anchor was written, or entries were added without the "
                           "audit key",
                           last_line, tuple(range(anchor.seq + 1, head_seq + 1)),
                           severity="warning"))
    return out


def inspect_chain(path: str, lines: Sequence[ParsedLine], anchor: AnchorView, *,
                  exists: bool = True, expected_head: str | None = None) -> AuditReport:
    """Every problem of the chain ``lines`` read from ``path``, given its anchor."""
    problems: list[Problem] = []
    if not exists and anchor.state == "absent":
        problems.append(Problem("missing", "no audit log found (expected one since the first "
                                "recorded action); check --log / $RECDRILL_AUDIT_LOG"))
    problems += _unparsed(lines)
    canon, found = _canonical(lines)
    problems += found + _reordered(canon) + _dropped(canon) + _links(canon)
    head_seq = max(canon, default=0)
    head = canon[head_seq][1].hash if canon else GENESIS
    last_line = lines[-1].number if lines else 0
    problems += _against_anchor(canon, anchor, head_seq, last_line, exists)
    if expected_head is not None and expected_head not in {e.hash for _, e in canon.values()}:
        problems.append(Problem("truncated", f"the expected head {expected_head[:16]}… is not in "
                                f"the log (head is {head[:16]}…): entries were dropped from the "
                                "end (or the log was replaced)", last_line))
    problems.sort(key=lambda p: (p.line, p.severity != "error"))
    return AuditReport(path, len(canon), head, head_seq, anchor, tuple(problems))
