"""Who a request's ``user_id`` is to one model version: pseudonyms and forgotten users.

A pseudonymised artifact (``Manifest.pseudonym_key_id`` set) stores each history under
``Pseudonymiser.of(user_id)``; the replica maps the caller's id through the same key before the
lookup, and refuses to load a version whose key it does not hold (a wrong key would answer
"unknown user" to everyone). Users in the forget register (``security.forget_register``) are
answered exactly as unknown users, and their histories are dropped from memory. The register is
re-read when its size or mtime changes, looked at no more than once per ``interval_s``: the hot
path costs one clock read and, for a pseudonymised version, one HMAC.

Example:
    >>> gate = UserGate.for_version(manifest, UserPrivacy())  # doctest: +SKIP
    >>> gate.stored_id("42")  # doctest: +SKIP
    'p_3f9c...'
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from export.manifest import Manifest
from security.errors import SecurityError
from security.forget_register import ForgetRegister
from security.paths import forget_register_path, pseudonym_key_path
from security.pseudonym import Pseudonymiser
from serving.errors import ModelLoadError

__all__ = ["ForgetWatch", "UserGate", "UserPrivacy"]

log = logging.getLogger(__name__)
_V = TypeVar("_V")
_LOAD_ATTEMPTS = 3
_Signature = tuple[int, int, int] | None  # (inode, size, mtime_ns) of the register; None: absent


@dataclass(frozen=True)
class UserPrivacy:
    """Where a replica finds the pseudonym key and the forget register (None: the defaults,
    ``security.paths.pseudonym_key_path()`` if that file exists, and
    ``security.paths.forget_register_path()``)."""

    pseudonym_key: str | None = None
    forget_register: str | None = None
    check_interval_s: float = 1.0

    def key_path(self) -> Path | None:
        """The pseudonym key file to use, or None when none is configured nor found."""
        if self.pseudonym_key is not None:
            return Path(self.pseudonym_key)
        default = pseudonym_key_path()
        return default if default.exists() else None

    def register_path(self) -> Path:
        return Path(self.forget_register) if self.forget_register else forget_register_path()


class ForgetWatch:
    """The forget register's pseudonyms, re-read when the file changes.

    ``current()`` returns ``(generation, pseudonyms)``; the generation grows by one at every
    change seen, so a holder re-filters only when it moved. An unreadable register keeps the
    last set read (forgetting never goes backwards) and is tried again at the next look.

    Example:
        >>> watch = ForgetWatch(Path("/nonexistent/forget.jsonl"))
        >>> watch.current()
        (0, frozenset())
    """

    def __init__(self, path: Path, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.interval_s, self._clock = path, interval_s, clock
        self._signature: _Signature = None
        self._state: tuple[int, frozenset[str]] = (0, frozenset())
        self._next_look = float("-inf")
        for attempt in range(_LOAD_ATTEMPTS):  # a line being appended reads as torn: look again
            try:
                self._look(strict=True)
                break
            except ModelLoadError:
                if attempt == _LOAD_ATTEMPTS - 1:
                    raise
                time.sleep(0.05)

    def current(self) -> tuple[int, frozenset[str]]:
        """The generation and the forgotten pseudonyms, at most ``interval_s`` old."""
        if self._clock() >= self._next_look:
            self._look(strict=False)
        return self._state

    def _look(self, *, strict: bool) -> None:
        self._next_look = self._clock() + self.interval_s
        try:
            try:
                st = os.stat(self.path)
                signature: _Signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                signature = None
            if signature == self._signature:
                return
            names = ForgetRegister(self.path).pseudonyms() if signature else frozenset()
        except (OSError, SecurityError) as exc:
            if strict:
                raise ModelLoadError(f"forget register {self.path}: cannot be read ({exc}); "
                                     "repair it or point forget_register at the right file"
                                     ) from exc
            log.warning("forget register %s unreadable, keeping the last %d entries: %s",
                        self.path, len(self._state[1]), exc)
            return
        self._signature = signature
        generation, known = self._state
        if not names <= known:
            self._state = (generation + 1, known | names)


class UserGate:
    """Maps callers' user ids to the ids one version stores, and filters forgotten users."""

    def __init__(self, pseudonymiser: Pseudonymiser | None, pseudonymised: bool,
                 watch: ForgetWatch | None) -> None:
        if pseudonymised and pseudonymiser is None:
            raise ValueError("a pseudonymised version needs its pseudonymiser")
        self._pseudonymiser, self.pseudonymised, self._watch = pseudonymiser, pseudonymised, watch
        self.stored_id: Callable[[str], str] = (
            pseudonymiser.of if pseudonymised and pseudonymiser is not None else str)
        """The id the version's histories are keyed by, for the caller's ``user_id``."""

    @classmethod
    def clear(cls) -> UserGate:
        """Clear ids, nobody forgotten (catalogs built in memory, baselines)."""
        return cls(None, False, None)

    @classmethod
    def for_version(cls, manifest: Manifest, privacy: UserPrivacy,
                    clock: Callable[[], float] = time.monotonic) -> UserGate:
        """The gate of the version ``manifest`` describes; ModelLoadError when its user ids
        are pseudonymised under a key this replica does not hold."""
        path = privacy.key_path()
        want = manifest.pseudonym_key_id
        pseudonymiser = None
        if path is not None:
            try:
                pseudonymiser = Pseudonymiser.load(path)
            except SecurityError as exc:
                if want is not None:
                    raise ModelLoadError(f"version {manifest.version}: user ids are "
                                         f"pseudonymised (key id {want}); {exc}") from exc
                log.warning("pseudonym key unusable, forget requests are not applied to "
                            "version %s (clear ids): %s", manifest.version, exc)
        if want is not None and pseudonymiser is None:
            raise ModelLoadError(
                f"version {manifest.version}: user ids are pseudonymised with key id {want} and "
                f"no pseudonym key is configured (expected {pseudonym_key_path()}); set "
                "pseudonym_key (RECDRILL_PSEUDONYM_KEY) to the key the artifact was exported with")
        if want is not None and pseudonymiser is not None and pseudonymiser.key_id != want:
            raise ModelLoadError(
                f"version {manifest.version}: user ids are pseudonymised with key id {want}, the "
                f"configured key {path} has key id {pseudonymiser.key_id}; set pseudonym_key "
                "(RECDRILL_PSEUDONYM_KEY) to the key the artifact was exported with")
        watch = ForgetWatch(privacy.register_path(), privacy.check_interval_s, clock)
        return cls(pseudonymiser, want is not None, watch)

    def forgotten(self) -> tuple[int, frozenset[str]]:
        """``(generation, pseudonyms)`` of the forget register (``(0, ∅)`` without one)."""
        return (0, frozenset()) if self._watch is None else self._watch.current()

    def without(self, histories: Mapping[str, _V], forgotten: frozenset[str]) -> dict[str, _V]:
        """``histories`` less every forgotten user (stored ids are clear or pseudonyms)."""
        if not forgotten:
            return dict(histories)
        if self.pseudonymised:
            return {u: h for u, h in histories.items() if u not in forgotten}
        of = self._pseudonymiser.of if self._pseudonymiser is not None else None
        if of is None:  # clear ids and no key: nothing to match the register against
            return dict(histories)
        return {u: h for u, h in histories.items() if of(u) not in forgotten}
