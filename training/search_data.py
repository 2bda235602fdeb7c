"""Product-search data: items as text, (query, relevant items) pairs, a seeded query split.

Two sources:

* **MovieLens-100k** has no query log, so :func:`movielens_queries` writes the queries a
  viewer would type, from each film's title, genres and release year: the title in lowercase
  with the article dropped ("usual suspects"), a prefix of it ("star trek"), the title with
  one or two typos ("shawshnk redemption"), a partial title with a genre word ("batman action
  movie"), and genre intents in plain words, often paraphrased and with a decade ("90s scary
  sci-fi film", "animated family movie"). BM25 handles the verbatim titles and literal genre
  words; typos, paraphrases ("cartoon", "gangster", "whodunit") and decades defeat it. The
  item text holds no year, so a decade can only be learnt from training queries.
* **Synthetic** (``training.synthetic``) ships ``queries.parquet`` from
  :meth:`~training.synthetic_catalog.Catalog.query_text` (brand / adjective / colour plus the
  category noun or a synonym of it). The log names one clicked item per row, but "navy
  trainers" is equally about every navy sneaker: :func:`synthetic_queries` widens each query
  to the items of its category whose titles carry all of its attribute words.

Relevance is a set of items. Queries whose set has more than ``max_relevant`` items (20 by
default: "drama" matches 725 films) are dropped: their top 10 cannot tell a good ranker from a
lucky one, while small sets keep multi-item intents (genre + decade) in the benchmark.

:func:`split_queries` holds out whole *intents*: every query with the same relevant set lands
on the same side, so no test query string, and no paraphrase or misspelling of one, is
trained on; the encoder is tested on items and intents it was never trained to retrieve.

Example:
    >>> items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Usual Suspects, The", "Heat"],
    ...                       "category": ["Crime Thriller", "Action Crime Thriller"],
    ...                       "year": [1995, 1995]})
    >>> qs = movielens_queries(items, seed=1)
    >>> [(q.text, q.relevant, q.kind) for q in qs if q.kind != "genre+decade"]
    [('usual', ('1',), 'partial'), ('usuaal sspects', ('1',), 'typo'), ('hat', ('2',), 'typo')]
    >>> sorted({(q.text, q.relevant) for q in qs if q.kind == "genre+decade"})[:2]
    [('1990s gangster edge of your seat', ('1', '2')), ('1990s mob thriller films', ('1', '2'))]
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retrieval.text import item_text, words
from training.errors import DataError
from training.loaders import read_raw_table

__all__ = ["MAX_RELEVANT", "SearchData", "SearchQuery", "SearchSplit", "load_search_data",
           "movielens_items", "movielens_queries", "normalize_query", "split_queries",
           "synthetic_queries"]

MAX_RELEVANT = 20

# Genre -> what people type for it; the first entry is the literal genre word (BM25 finds it).
_GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "Action": ("action", "action packed", "shoot em up", "fight"),
    "Adventure": ("adventure", "quest", "epic journey", "treasure hunt"),
    "Animation": ("animation", "animated", "cartoon"),
    "Children's": ("children's", "kids", "family", "for kids"),
    "Comedy": ("comedy", "funny", "hilarious", "laugh out loud"),
    "Crime": ("crime", "gangster", "mob", "heist"),
    "Documentary": ("documentary", "docu", "nonfiction", "real life footage"),
    "Drama": ("drama", "dramatic", "serious", "emotional"),
    "Fantasy": ("fantasy", "magical", "sword and sorcery", "fairy tale"),
    "Film-Noir": ("film noir", "noir", "hardboiled detective"),
    "Horror": ("horror", "scary", "creepy", "terrifying"),
    "Musical": ("musical", "song and dance", "singing"),
    "Mystery": ("mystery", "whodunit", "detective puzzle"),
    "Romance": ("romance", "romantic", "love story"),
    "Sci-Fi": ("sci-fi", "science fiction", "futuristic", "space"),
    "Thriller": ("thriller", "suspense", "edge of your seat", "tense"),
    "War": ("war", "military", "battlefield", "wartime"),
    "Western": ("western", "cowboy", "wild west"),
}
_LITERAL_PROB = 0.35
_NOUNS = ("movie", "movies", "film", "films", "")
_DECADE_NAMES = {1920: "twenties", 1930: "thirties", 1940: "forties", 1950: "fifties",
                 1960: "sixties", 1970: "seventies", 1980: "eighties", 1990: "nineties"}
_ARTICLE = re.compile(r"^(.*), (The|A|An|Il|La|Le|Les|L'|Das|Der|Die|Det|El|Los|Las)$")
_STOP = frozenset({"the", "a", "an", "of", "and", "in", "on", "to", "for", "with", "from", "at",
                   "by", "is", "it", "i", "my", "me", "you", "your"})
_KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm"
# Share of items that get each kind of title query, and of items that seed a genre intent.
_TITLE_KINDS = {"title": 0.5, "partial": 0.5, "typo": 0.8, "title+genre": 0.3}
_INTENT_PROB, _PARAPHRASES = 0.6, 3


@dataclass(frozen=True)
class SearchQuery:
    """One query string, the ids of the items relevant to it (sorted), and how it was made.

    ``kind`` groups queries for per-kind metrics: ``title``, ``partial``, ``typo``,
    ``title+genre``, ``genre``, ``genre+decade`` (MovieLens) or ``verbatim`` / ``synonym``
    (synthetic: whether every query word occurs in a relevant item's text).
    """

    text: str
    relevant: tuple[str, ...]
    kind: str


@dataclass(frozen=True)
class SearchData:
    """The searchable items (``item_text`` of each, in id order) and every query."""

    name: str
    item_ids: tuple[str, ...]
    item_texts: tuple[str, ...]
    queries: tuple[SearchQuery, ...]

    def relevant_positions(self, queries: Sequence[SearchQuery]) -> list[set[int]]:
        """Each query's relevant items as 0-based positions in ``item_ids``."""
        pos = {item: i for i, item in enumerate(self.item_ids)}
        return [{pos[r] for r in q.relevant} for q in queries]


@dataclass(frozen=True)
class SearchSplit:
    """Queries held out by intent: ``train``, ``validation`` and ``test`` share no relevant
    set (hence no query string)."""

    train: tuple[SearchQuery, ...]
    validation: tuple[SearchQuery, ...]
    test: tuple[SearchQuery, ...]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation),
                "test": len(self.test)}


def normalize_query(text: str) -> str:
    """Lowercase, single spaces: the form queries are compared and de-duplicated in.

    Example:
        >>> normalize_query("  Toy   STORY ")
        'toy story'
    """
    return " ".join(text.lower().split())


def _display_title(title: str) -> str:
    """'Usual Suspects, The (Alt)' -> 'usual suspects' (main title, article dropped)."""
    main = re.sub(r"\s*\(.*\)\s*$", "", title).strip() or title
    match = _ARTICLE.match(main)
    return (match.group(1) if match else main).lower()


def _plain(title: str) -> str:
    """What a user types for a title: mojibake repaired (UTF-8 once read as latin-1), accents
    folded ('Cérémonie' -> 'Ceremonie')."""
    with contextlib.suppress(UnicodeError):
        title = title.encode("latin-1").decode("utf-8")
    folded = unicodedata.normalize("NFKD", title)
    return "".join(ch for ch in folded if not unicodedata.combining(ch))


def _title_words(title: str) -> list[str]:
    return re.sub(r"[^0-9a-z' ]+", " ", _display_title(_plain(title)).replace(".", "")).split()


def _typo(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(0, 4))
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 1:
        return word[:i] + word[i + 1:]
    if op == 2:
        return word[:i] + word[i] + word[i:]
    row = next((r for r in _KEYBOARD.split() if word[i] in r), None)
    if row is None:
        return word[:i] + word[i + 1:]
    j = row.index(word[i])
    near = row[j - 1] if j > 0 and (j == len(row) - 1 or rng.random() < 0.5) else row[j + 1]
    return word[:i] + near + word[i + 1:]


def _misspell(tokens: list[str], rng: np.random.Generator) -> str | None:
    long = [i for i, t in enumerate(tokens) if len(t) >= 4 and t.isalpha()]
    if not long:
        return None
    n = 1 if len(long) == 1 or rng.random() < 0.6 else 2
    out = list(tokens)
    for i in rng.choice(long, size=n, replace=False).tolist():
        for _ in range(3):  # swapping "ll" in "kill" changes nothing: try again
            out[i] = _typo(tokens[i], rng)
            if out[i] != tokens[i]:
                break
    typed = " ".join(out)
    return typed if typed != " ".join(tokens) else None


def _genre_phrase(genre: str, rng: np.random.Generator) -> str:
    options = _GENRE_WORDS[genre]
    return options[0] if rng.random() < _LITERAL_PROB else str(rng.choice(options[1:]))


def _decade_phrase(decade: int, rng: np.random.Generator) -> str:
    short = f"{decade % 100:02d}s"
    forms = [short, f"{decade}s", f"from the {short}", _DECADE_NAMES.get(decade, short)]
    return str(rng.choice(forms))


def _intent_text(genres: Sequence[str], decade: int | None, rng: np.random.Generator) -> str:
    parts = [_genre_phrase(g, rng) for g in rng.permutation(list(genres)).tolist()]
    noun = str(rng.choice(_NOUNS))
    if decade is None:
        return " ".join([*parts, noun])
    when = _decade_phrase(decade, rng)
    if when.startswith("from") or rng.random() < 0.3:
        return " ".join([*parts, noun, when])
    return " ".join([when, *parts, noun])


class _Catalog:
    """Title words and genre sets of every item, with a word -> items index for lookups."""

    def __init__(self, items: pd.DataFrame) -> None:
        self.ids = items["item_id"].astype(str).tolist()
        self.titles = [_title_words(t) for t in items["title"].astype(str)]
        self.genres = [frozenset(c.split()) - {"unknown"} for c in items["category"].astype(str)]
        years = (pd.to_numeric(items["year"], errors="coerce") if "year" in items
                 else pd.Series(np.nan, index=items.index)).tolist()
        self.decades: list[int | None] = [None if pd.isna(y) else int(y) // 10 * 10
                                          for y in years]
        self.by_word: dict[str, list[int]] = defaultdict(list)
        for i, tokens in enumerate(self.titles):
            for w in set(tokens):
                self.by_word[w].append(i)

    def containing(self, phrase: Sequence[str]) -> list[int]:
        """Items whose title holds ``phrase`` as a contiguous run of words."""
        n = len(phrase)
        return [i for i in self.by_word.get(phrase[0], [])
                if any(self.titles[i][s:s + n] == list(phrase)
                       for s in range(len(self.titles[i]) - n + 1))]

    def with_genres(self, genres: frozenset[str], decade: int | None,
                    among: Iterable[int] | None = None) -> list[int]:
        pool = range(len(self.ids)) if among is None else among
        return [i for i in pool if genres <= self.genres[i]
                and (decade is None or self.decades[i] == decade)]


def movielens_queries(items: pd.DataFrame, seed: int,
                      max_relevant: int = MAX_RELEVANT) -> list[SearchQuery]:
    """Queries for a film catalog (``item_id``, ``title``, ``category`` = space-separated
    genres, optional ``year``); see the module docstring. Deterministic under ``seed``.

    Queries that normalise to the same text are merged (union of relevant sets), then those
    with more than ``max_relevant`` relevant items are dropped.
    """
    cat = _Catalog(items)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(10,)))
    found: dict[str, tuple[set[int], str]] = {}

    def add(text: str, relevant: Iterable[int], kind: str) -> None:
        key = normalize_query(text)
        if key:
            found.setdefault(key, (set(), kind))[0].update(relevant)

    for i, tokens in enumerate(cat.titles):
        if not tokens:
            continue
        same_title = cat.containing(tokens)
        same_title = [j for j in same_title if len(cat.titles[j]) == len(tokens)]
        draws = {kind: rng.random() < p for kind, p in _TITLE_KINDS.items()}
        content = [k for k, t in enumerate(tokens) if t not in _STOP]
        prefix = tokens[:max(content[0] + 1, (len(tokens) + 1) // 2)] if content else tokens
        while len(prefix) > 1 and prefix[-1] in _STOP:
            prefix = prefix[:-1]
        if draws["title"]:
            add(" ".join(tokens).replace("'", "" if rng.random() < 0.5 else "'"), same_title,
                "title")
        if draws["partial"] and len(prefix) < len(tokens):
            add(" ".join(prefix), cat.containing(prefix), "partial")
        if draws["typo"] and (typo := _misspell(tokens, rng)) is not None:
            add(typo, same_title, "typo")
        if draws["title+genre"] and cat.genres[i]:
            genre = str(rng.choice(sorted(cat.genres[i])))
            noun = str(rng.choice(_NOUNS))
            add(f"{' '.join(prefix)} {_genre_phrase(genre, rng)} {noun}",
                cat.with_genres(frozenset([genre]), None, cat.containing(prefix)), "title+genre")
        if rng.random() < _INTENT_PROB and cat.genres[i]:
            own = sorted(cat.genres[i])
            size = int(rng.integers(1, min(3, len(own)) + 1))
            genres = frozenset(rng.choice(own, size=size, replace=False).tolist())
            decade = cat.decades[i] if rng.random() < 0.6 else None
            relevant = cat.with_genres(genres, decade)
            if len(relevant) <= max_relevant:
                kind = "genre" if decade is None else "genre+decade"
                for _ in range(_PARAPHRASES):
                    add(_intent_text(sorted(genres), decade, rng), relevant, kind)
    return [SearchQuery(text, tuple(sorted(cat.ids[j] for j in rel)), kind)
            for text, (rel, kind) in found.items() if 0 < len(rel) <= max_relevant]


def synthetic_queries(items: pd.DataFrame, log: pd.DataFrame,
                      max_relevant: int = MAX_RELEVANT) -> list[SearchQuery]:
    """Queries of a synthetic ``queries.parquet`` (``query``, ``item_id``) over its
    ``items.parquet``, each widened to every item of the logged items' categories whose title
    holds all of the query's attribute words (see the module docstring).

    Example:
        >>> items = pd.DataFrame({"item_id": ["a", "b", "c"], "category": ["x/boots"] * 3,
        ...                       "title": ["Nor red boots", "Vel red boots", "Nor blue boots"]})
        >>> [q.relevant for q in synthetic_queries(items, pd.DataFrame(
        ...     {"query": ["red booties"], "item_id": ["a"]}))]
        [('a', 'b')]
    """
    items = items.astype({"item_id": str, "title": str, "category": str})
    title_words = [set(words(t)) for t in items["title"]]
    by_cat: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(items["category"]):
        by_cat[c].append(i)
    cat_vocab = {c: set().union(*(title_words[i] for i in rows)) for c, rows in by_cat.items()}
    row_of = {item: i for i, item in enumerate(items["item_id"])}
    logged: dict[str, set[str]] = defaultdict(set)
    for text, item in zip(log["query"].astype(str), log["item_id"].astype(str), strict=True):
        if item not in row_of:
            raise DataError("queries.parquet", "item_id", None,
                            f"query {text!r} names item {item!r}, which items.parquet lacks")
        logged[normalize_query(text)].add(item)
    out = []
    ids, cats = items["item_id"].tolist(), items["category"].tolist()
    for text, clicked in logged.items():
        relevant = set(clicked)
        q_words = set(words(text))
        for c in {cats[row_of[item]] for item in clicked}:
            noun = set(words(c.split("/")[-1]))
            attributes = (q_words & cat_vocab[c]) - noun
            relevant.update(ids[i] for i in by_cat[c] if attributes <= title_words[i])
        if len(relevant) > max_relevant:
            continue
        text_words = set().union(*(words(item_text(items["title"].iat[row_of[r]],
                                                   cats[row_of[r]])) for r in relevant))
        out.append(SearchQuery(text, tuple(sorted(relevant)),
                               "verbatim" if q_words <= text_words else "synonym"))
    return out


def _bucket(key: str, seed: int) -> float:
    """A uniform number in [0, 1) from a key and the seed (stable across runs and platforms)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def split_queries(queries: Sequence[SearchQuery], seed: int, validation: float = 0.1,
                  test: float = 0.2) -> SearchSplit:
    """Hold out intents: queries sharing a relevant set go to the same side, chosen by a
    seeded hash of the set, so the split is deterministic and independent of query order.

    Example:
        >>> qs = [SearchQuery(f"q{i}", (str(i % 50),), "title") for i in range(200)]
        >>> s = split_queries(qs, seed=1)
        >>> {q.relevant for q in s.test}.isdisjoint({q.relevant for q in s.train})
        True
    """
    if not (0.0 <= validation < 1.0 and 0.0 < test < 1.0 and validation + test < 1.0):
        raise ValueError(f"need 0 <= validation, 0 < test and validation + test < 1, found "
                         f"{validation} and {test}")
    parts: dict[str, list[SearchQuery]] = {"train": [], "validation": [], "test": []}
    for q in sorted(queries, key=lambda q: (q.text, q.relevant)):
        u = _bucket("\x1f".join(q.relevant), seed)
        side = "test" if u < test else "validation" if u < test + validation else "train"
        parts[side].append(q)
    return SearchSplit(tuple(parts["train"]), tuple(parts["validation"]), tuple(parts["test"]))


def movielens_items(directory: Path) -> pd.DataFrame:
    """The ``ml-100k.item`` table as ``item_id``, ``title``, ``category`` (genres), ``year``.

    The training loaders drop the release year; the search queries use it for decades.
    """
    path = directory / "ml-100k.item"
    frame = read_raw_table(path, keep_default_na=False)  # as the training loaders read it
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    for column in ("item_id", "movie_title", "class"):
        if column not in frame:
            raise DataError(str(path), column, None,
                            f"column is missing; found columns {list(frame.columns)}")
    return pd.DataFrame({"item_id": frame["item_id"], "title": frame["movie_title"],
                         "category": frame["class"],
                         "year": pd.to_numeric(frame.get("release_year"), errors="coerce")})


def load_search_data(source: str, seed: int, max_relevant: int = MAX_RELEVANT) -> SearchData:
    """``ml-100k`` (fetched like training does, queries generated under ``seed``) or a
    synthetic dataset directory (``items.parquet`` and ``queries.parquet``)."""
    if source == "ml-100k":
        from training.fetch import fetch_movielens_100k

        items = movielens_items(fetch_movielens_100k())
        queries = movielens_queries(items, seed, max_relevant)
    else:
        directory = Path(source)
        paths = [directory / "items.parquet", directory / "queries.parquet"]
        for path in paths:
            if not path.is_file():
                raise DataError(str(path), None, None, "not found: expected 'ml-100k' or a "
                                "directory written by `python -m training synth`")
        items = read_raw_table(paths[0], columns=["item_id", "title", "category"])
        queries = synthetic_queries(items, read_raw_table(paths[1]), max_relevant)
    items = items.astype({"item_id": str, "title": str, "category": str})
    if not queries:
        raise DataError(source, None, None, "no usable search queries (each needs 1 to "
                        f"{max_relevant} relevant items)")
    texts = tuple(item_text(t, c) for t, c in zip(items["title"], items["category"], strict=True))
    return SearchData(source, tuple(items["item_id"]), texts,
                      tuple(sorted(queries, key=lambda q: q.text)))
