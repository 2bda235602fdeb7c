"""How a training run protects user data: forgotten users left out, sealed data read in memory
only (and audited), the checkpoint's user ids sealed too.

The decision (which events belong to forgotten users) is ``exclude_forgotten``, a pure
function of the events, the register's pseudonyms and the pseudonymiser; ``DataProtection``
says where the keys and the register are and does the reading.

Example:
    >>> import pandas as pd
    >>> from security.pseudonym import Pseudonymiser
    >>> p = Pseudonymiser(b"k" * 32)
    >>> events = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
    >>> kept, dropped = exclude_forgotten(events, frozenset({p.of("a")}), p)
    >>> kept["user_id"].tolist(), dropped
    (['b'], Exclusion(users=1, events=2))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from security.datadir import data_key
from security.errors import SecurityError
from security.forget_register import ForgetRegister
from security.paths import forget_register_path, pseudonym_key_path
from security.pseudonym import Pseudonymiser
from training.errors import ConfigError

__all__ = ["DataProtection", "Exclusion", "exclude_forgotten"]


@dataclass(frozen=True)
class Exclusion:
    """How many users (and their events) a run left out because they asked to be forgotten."""

    users: int = 0
    events: int = 0


def exclude_forgotten(interactions: pd.DataFrame, forgotten: frozenset[str],
                      pseudonymiser: Pseudonymiser) -> tuple[pd.DataFrame, Exclusion]:
    """``interactions`` without the events of users whose pseudonym is in ``forgotten``."""
    if not forgotten or interactions.empty:
        return interactions, Exclusion()
    users = interactions["user_id"].dropna().unique()
    gone = [u for u in users if pseudonymiser.of(str(u)) in forgotten]
    if not gone:
        return interactions, Exclusion()
    mask = interactions["user_id"].isin(gone).to_numpy()
    kept = interactions.loc[~mask].reset_index(drop=True)
    return kept, Exclusion(len(gone), int(mask.sum()))


@dataclass(frozen=True)
class DataProtection:
    """Where a run finds the data key, the pseudonym key and the forget register (None: the
    defaults of ``security.paths``), and whether it seals its checkpoint's user ids
    (``seal_checkpoint`` None: exactly when the raw data was sealed)."""

    data_key: Path | None = None
    pseudonym_key: Path | None = None
    forget_register: Path | None = None
    seal_checkpoint: bool | None = None

    def read_data_key(self, *, create: bool = False) -> bytes | None:
        """The data key (None when there is none and ``create`` is false)."""
        try:
            return data_key(self.data_key, create=create)
        except SecurityError as exc:
            raise ConfigError(f"data key: {exc}") from exc

    def forgotten(self) -> tuple[frozenset[str], Pseudonymiser | None]:
        """The register's pseudonyms and the pseudonymiser to match them with (None when the
        register is empty). ConfigError when users are registered but their key is missing:
        training must not include them by accident."""
        register = ForgetRegister(self.forget_register or forget_register_path())
        try:
            names = register.pseudonyms()
        except SecurityError as exc:
            raise ConfigError(f"forget register: {exc}") from exc
        if not names:
            return names, None
        key = self.pseudonym_key or pseudonym_key_path()
        try:
            return names, Pseudonymiser.load(key)
        except SecurityError as exc:
            raise ConfigError(f"the forget register {register.path} names {len(names)} user(s) "
                              f"but their pseudonym key cannot be read ({exc}); restore the key "
                              "the register was written with (RECDRILL_PSEUDONYM_KEY)") from exc
