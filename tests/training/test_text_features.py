"""Item text in the recommender: projections, the option off, the side table end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from export.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from training.checkpoint import load_checkpoint, save_checkpoint
from training.clean import SequenceData
from training.errors import ConfigError
from training.model import ModelConfig, SASRec
from training.text_features import item_texts, mixed_init, text_pca
from training.train import TrainConfig, train_recommender


def _config(item_text: str = "none") -> ModelConfig:
    return ModelConfig(hidden_size=16, num_layers=1, num_heads=2, max_seq_len=8,
                       item_text=item_text)


FAST = TrainConfig(max_epochs=2, batch_size=16, patience=2, threads=1)


def _text(n: int, dim: int = 384) -> np.ndarray:
    x = np.random.default_rng(1).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_text_pca_shape_scale_and_fixed_signs() -> None:
    x = _text(40)
    p = text_pca(x, 6)
    assert p.shape == (40, 6) and p.dtype == np.float32
    assert p.std() == pytest.approx(0.05, rel=1e-4)
    assert np.allclose(text_pca(-x, 6), p, atol=1e-6)  # sign of the basis is pinned
    assert text_pca(x[:, :3], 6)[:, 3:].std() == 0.0  # fewer components than asked: zero pad


def test_mixed_init_halves() -> None:
    x, ppmi = _text(30), np.random.default_rng(2).normal(0, 0.05, size=(30, 8))
    mixed = mixed_init(x, ppmi, 8)
    assert mixed.shape == (30, 8)
    assert np.allclose(mixed[:, :4] / ppmi[:, :4], mixed[0, 0] / ppmi[0, 0])  # PPMI rescaled
    assert np.allclose(mixed[:, 4:], text_pca(x, 4))
    assert np.allclose(mixed_init(x, None, 8), text_pca(x, 8))
    with pytest.raises(ConfigError):
        mixed_init(x, ppmi[:5], 8)


def test_item_texts_in_order() -> None:
    table = pd.DataFrame({"title": ["A", "B"], "category": ["x y", ""]})
    assert item_texts(table) == ["A (x y)", "B"]


def test_option_off_is_the_model_as_before() -> None:
    assert ModelConfig().item_text == "none"
    torch.manual_seed(0)
    plain = SASRec(20, _config())
    assert not any("text" in k for k in plain.state_dict())
    assert plain.item_vectors() is plain.bert.embeddings.word_embeddings.weight
    with pytest.raises(ConfigError):
        ModelConfig(item_text="both")


def test_side_starts_exactly_as_without_text() -> None:
    torch.manual_seed(0)
    plain = SASRec(20, _config()).eval()
    torch.manual_seed(0)
    side = SASRec(20, _config("side")).eval()
    side.load_item_text(torch.from_numpy(_text(20)))
    x = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(plain(x), side(x))
    after_side = torch.rand(1)  # the zero projection drew no random numbers: same dropout
    torch.manual_seed(0)
    SASRec(20, _config())
    assert torch.equal(after_side, torch.rand(1))


def test_text_modes_need_the_matrix(toy_data: SequenceData) -> None:
    with pytest.raises(ConfigError, match="item-text matrix"):
        train_recommender(toy_data, _config("init"), FAST, progress=False)


@pytest.mark.parametrize("mode", ["init", "side"])
def test_text_modes_train(toy_data: SequenceData, mode: str) -> None:
    text = _text(toy_data.n_items)
    result = train_recommender(toy_data, _config(mode), FAST,
                               progress=False, item_text=text)
    assert result.epochs_run == 2
    if mode == "side":
        assert torch.equal(result.model.text_table[1:], torch.from_numpy(text))
        assert result.model.text_proj is not None and result.model.text_proj.abs().sum() > 0


def test_side_checkpoint_round_trip_and_onnx(tmp_path: Path, toy_data: SequenceData) -> None:
    torch.manual_seed(0)
    model = SASRec(toy_data.n_items, _config("side")).eval()
    model.load_item_text(torch.from_numpy(_text(toy_data.n_items)))
    with torch.no_grad():
        assert model.text_proj is not None
        model.text_proj.normal_(0, 0.05)
    meta = {"config": {"model": model.config.to_dict()}}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "ckpt", model, toy_data,
                                             pd.DataFrame(), meta)).model
    x = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5], [9, 10, 11, 12, 1, 2, 3, 4]])
    with torch.no_grad():
        expected = model(x).numpy()
        assert np.array_equal(loaded(x).numpy(), expected)
    onnx_path = export_onnx(loaded, tmp_path / "model.onnx", max_seq_len=8)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    (scores,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    assert scores.shape == (2, toy_data.n_items)
    assert np.abs(scores - expected).max() <= 1e-4
