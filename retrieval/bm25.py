"""Okapi BM25 over short item texts, with postings in flat numpy arrays.

Term weights are precomputed at build, so scoring a query is one ``bincount`` over the
postings of its words: about a millisecond at 10^5 items.

Example:
    >>> index = BM25Index.build(["red boots", "blue boots", "red hat"])
    >>> index.search("red boots", 2)[0].tolist()
    [0, 1]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.text import words
from retrieval.topk import top_k

__all__ = ["BM25Index"]


@dataclass(frozen=True, eq=False)
class BM25Index:
    """Postings of every word: ``docs[starts[t]:starts[t+1]]`` with their BM25 weights."""

    vocab: dict[str, int]
    starts: np.ndarray   # int64 [V + 1]
    docs: np.ndarray     # int64 [P], document of each posting
    weights: np.ndarray  # float32 [P], idf · saturated term frequency
    n_docs: int

    @classmethod
    def build(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> BM25Index:
        """Index ``texts``; document ``i`` is ``texts[i]``."""
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        doc_ids: list[int] = []
        tfs: list[int] = []
        lengths = np.zeros(len(texts), np.float64)
        for d, text in enumerate(texts):
            counts = Counter(words(text))
            lengths[d] = sum(counts.values())
            for word, tf in counts.items():
                term_ids.append(vocab.setdefault(word, len(vocab)))
                doc_ids.append(d)
                tfs.append(tf)
        terms = np.asarray(term_ids, np.int64)
        order = np.argsort(terms, kind="stable")
        terms, docs = terms[order], np.asarray(doc_ids, np.int64)[order]
        freq = np.asarray(tfs, np.float64)[order]
        df = np.bincount(terms, minlength=len(vocab)).astype(np.float64)
        idf = np.log1p((max(len(texts), 1) - df + 0.5) / (df + 0.5))
        avg = lengths.mean() if len(texts) and lengths.mean() > 0 else 1.0
        norm = k1 * (1.0 - b + b * lengths[docs] / avg)
        weights = (idf[terms] * freq * (k1 + 1.0) / (freq + norm)).astype(np.float32)
        starts = np.zeros(len(vocab) + 1, np.int64)
        np.cumsum(df.astype(np.int64), out=starts[1:])
        return cls(vocab, starts, docs, weights, len(texts))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (float32, 0 where no word matches)."""
        out = np.zeros(self.n_docs, np.float32)
        for word in set(words(query)):
            t = self.vocab.get(word)
            if t is not None:
                lo, hi = self.starts[t], self.starts[t + 1]
                out += np.bincount(self.docs[lo:hi], self.weights[lo:hi],
                                   minlength=self.n_docs).astype(np.float32)
        return out

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best matching documents (0-based) and scores; only documents that match
        at least one word, so the answer may be shorter than ``k``."""
        scores = self.scores(query)
        idx, vals = top_k(scores, k)
        keep = vals > 0
        return idx[keep], vals[keep]
