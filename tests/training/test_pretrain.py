from __future__ import annotations

import numpy as np
import torch

from training.model import ModelConfig, SASRec
from training.pretrain import ppmi_embeddings


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def test_co_occurring_items_get_close_embeddings() -> None:
    groups = [np.array([1, 2, 3]), np.array([4, 5, 6])]
    train = [groups[u % 2][np.random.default_rng(u).permutation(3)] for u in range(40)]
    emb = ppmi_embeddings(train, 6, 4)
    assert emb.shape == (6, 4) and abs(emb.std() - 0.05) < 1e-6
    assert _cos(emb[0], emb[1]) > _cos(emb[0], emb[3]) + 0.3


def test_embeddings_load_into_the_model() -> None:
    model = SASRec(6, ModelConfig(hidden_size=4, num_heads=2, max_seq_len=4))
    emb = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    model.load_item_embeddings(emb)
    weight = model.bert.embeddings.word_embeddings.weight
    assert torch.equal(weight[1:], emb) and not torch.equal(weight[0], emb[0])
