"""Item text (title and genres) as a pre-trained signal for the sequential recommender.

The search encoder (all-MiniLM-L6-v2, pretrained or fine-tuned, see
:mod:`training.search_model`) turns each item's ``title (category)`` into a unit row of 384
floats. The recommender uses that matrix in one of two ways (``ModelConfig.item_text``):

* ``init``: half of the item-embedding dimensions start from the text's principal
  components, the other half from the PPMI co-occurrence embeddings (all of them from the
  text when PPMI pre-training is off);
* ``side``: the matrix is a frozen table inside the model and a learned projection
  384 → hidden is added to every item's embedding, at the input and in the tied output.

The projections here are pure numpy; :func:`item_text_matrix` is the only part that runs
the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from retrieval.text import item_text
from training.errors import ConfigError
from training.model import ITEM_TEXT_MODES

__all__ = ["ITEM_TEXT_MODES", "MAX_TEXT_TOKENS", "item_text_matrix", "item_texts",
           "mixed_init", "text_pca"]

#: Token cap per item text; ML-100k ``title (genres)`` needs at most ~40.
MAX_TEXT_TOKENS = 64


def item_texts(table: pd.DataFrame) -> list[str]:
    """``title (category)`` per row of :func:`training.checkpoint.item_table`, in index order.

    Example:
        >>> item_texts(pd.DataFrame({"title": ["Heat (1995)"], "category": ["Action"]}))
        ['Heat (1995) (Action)']
    """
    return [item_text(t, c) for t, c in zip(table["title"], table["category"], strict=True)]


def item_text_matrix(texts: Sequence[str], encoder_path: Path | None = None,
                     batch: int = 128) -> np.ndarray:
    """Unit rows ``[len(texts), 384]`` from the pretrained encoder (``encoder_path`` None) or
    a search checkpoint directory. Runs the encoder (seconds for a few thousand items)."""
    from training.search_model import load_encoder

    return load_encoder(encoder_path).encode(list(texts), MAX_TEXT_TOKENS, batch)


def text_pca(text: np.ndarray, dim: int, target_std: float = 0.05) -> np.ndarray:
    """The ``dim`` leading principal components of ``text`` rows, scaled to ``target_std``
    overall (the scale of :func:`training.pretrain.ppmi_embeddings`). Signs are fixed so each
    component's largest loading is positive, so the result does not depend on the SVD solver.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(50, 8))
        >>> p = text_pca(x, 3)
        >>> p.shape, round(float(p.std()), 3)
        ((50, 3), 0.05)
    """
    if dim < 1:
        raise ConfigError(f"dim must be >= 1, got {dim}")
    centred = np.asarray(text, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    comps = u[:, :dim] * s[:dim]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    comps = comps * np.where(signs == 0, 1.0, signs)
    if comps.shape[1] < dim:
        comps = np.pad(comps, ((0, 0), (0, dim - comps.shape[1])))
    std = float(comps.std())
    return np.asarray(comps * (target_std / std if std > 0 else 1.0), dtype=np.float32)


def mixed_init(text: np.ndarray, ppmi: np.ndarray | None, dim: int,
               target_std: float = 0.05) -> np.ndarray:
    """Item-embedding start ``[n_items, dim]``: the first ``dim // 2`` columns from PPMI
    (its leading components), the rest from the text's; all text when ``ppmi`` is None.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> mixed_init(rng.normal(size=(20, 6)), rng.normal(size=(20, 4)), 4).shape
        (20, 4)
    """
    if ppmi is None:
        return text_pca(text, dim, target_std)
    if ppmi.shape[0] != text.shape[0]:
        raise ConfigError(f"text has {text.shape[0]} rows but PPMI has {ppmi.shape[0]}: "
                          "both must cover the same items in the same order")
    half = dim // 2
    ppmi_part = ppmi[:, :half]
    ppmi_std = ppmi_part.std() if half else 0.0
    ppmi_part = ppmi_part * (target_std / ppmi_std if ppmi_std > 0 else 1.0)
    return np.concatenate([ppmi_part, text_pca(text, dim - half, target_std)],
                          axis=1).astype(np.float32)
