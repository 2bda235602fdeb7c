from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from training.checkpoint import load_checkpoint, save_checkpoint
from training.clean import SequenceData
from training.errors import ConfigError, DataError
from training.metrics import evaluate
from training.model import ModelConfig, SASRec
from training.train import TrainConfig, torch_scorer, train_recommender

SMALL = ModelConfig(hidden_size=16, num_layers=1, num_heads=2, max_seq_len=8, dropout=0.0,
                    attention_dropout=0.0)


def test_padding_does_not_change_scores() -> None:
    torch.manual_seed(0)
    model = SASRec(20, SMALL).eval()
    with torch.no_grad():
        short = model(torch.tensor([[3, 4, 5]]))
        padded = model(torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5]]))
    assert torch.allclose(short, padded, atol=1e-5)


def test_scores_are_causal_in_the_history() -> None:
    torch.manual_seed(0)
    model = SASRec(20, SMALL).eval()
    with torch.no_grad():
        states_a = model.hidden_states(torch.tensor([[1, 2, 3, 4]]))
        states_b = model.hidden_states(torch.tensor([[1, 2, 3, 9]]))
    assert torch.allclose(states_a[:, :3], states_b[:, :3], atol=1e-6)
    assert not torch.allclose(states_a[:, 3], states_b[:, 3])


def test_bad_model_config() -> None:
    with pytest.raises(ConfigError):
        ModelConfig(hidden_size=10, num_heads=3)


def _train(data: SequenceData) -> tuple[SASRec, float]:
    result = train_recommender(data, SMALL, TrainConfig(max_epochs=15, batch_size=16, lr=5e-3,
                                                        patience=15, threads=1), progress=False)
    hist, tgt = data.split("test")
    return result.model, evaluate(torch_scorer(result.model), hist, tgt).unfiltered.hr


def test_training_learns_the_sequence_and_is_deterministic(toy_data: SequenceData) -> None:
    model_a, hr = _train(toy_data)
    model_b, _ = _train(toy_data)
    assert hr > 0.8  # the next item is a function of the last one
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_round_trip(tmp_path: Path, toy_data: SequenceData) -> None:
    torch.manual_seed(0)
    model = SASRec(toy_data.n_items, SMALL).eval()
    items = pd.DataFrame({"item_id": ["i0"], "title": ["Zero"], "category": ["c"]})
    meta = {"config": {"model": SMALL.to_dict(), "train": {}}}
    save_checkpoint(tmp_path, model, toy_data, items, meta)
    loaded = load_checkpoint(tmp_path)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids), loaded.model(ids))
    assert loaded.data.user_ids == toy_data.user_ids
    assert all(np.array_equal(a, b) for a, b in zip(loaded.data.sequences, toy_data.sequences))
    assert loaded.items["title"].tolist()[:2] == ["Zero", "i1"]


def test_incomplete_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="incomplete"):
        load_checkpoint(tmp_path)
