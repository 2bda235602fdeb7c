"""The one text an item is encoded and indexed as, and the words BM25 matches on.

Example:
    >>> item_text("Toy Story", "Animation Children's Comedy")
    "Toy Story (Animation Children's Comedy)"
    >>> words("Toy Story (Animation, 1995)")
    ['toy', 'story', 'animation', '1995']
"""

from __future__ import annotations

import re

__all__ = ["item_text", "words"]

_WORD = re.compile(r"[0-9a-z]+")


def item_text(title: str, category: str) -> str:
    """``title (category)``, or the title alone when there is no category."""
    title, category = str(title).strip(), str(category).strip()
    return f"{title} ({category})" if category else title


def words(text: str) -> list[str]:
    """Lowercase alphanumeric runs (punctuation and apostrophes split words)."""
    return _WORD.findall(text.lower())
