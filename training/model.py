"""SASRec-style causal transformer recommender built on ``transformers.BertModel``.

Inputs are item-index histories, left-padded with 0. Positions count backwards from the
newest item (the last item is position 0), so a history scores the same whatever its
padding: the exported ONNX graph accepts any sequence length up to ``max_seq_len``.
Output layer is tied to the item embeddings; ``scores[:, j]`` scores item index ``j + 1``.
With ``item_text="side"`` an item's embedding is its learned row plus a learned projection of
its frozen text embedding (:mod:`training.text_features`), at the input and in the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, BertModel

from training.errors import ConfigError

#: ``ModelConfig.item_text``: no item text, text in the embeddings' start, text as a side table.
ITEM_TEXT_MODES = ("none", "init", "side")


@dataclass(frozen=True)
class ModelConfig:
    """Size and regularisation of the recommender.

    Example:
        >>> ModelConfig(hidden_size=64, num_layers=2).num_heads
        2
    """

    hidden_size: int = 32
    num_layers: int = 1
    num_heads: int = 2
    max_seq_len: int = 50
    dropout: float = 0.3
    attention_dropout: float = 0.3
    item_bias: bool = True
    init_std: float = 0.02
    pretrain: bool = True
    item_text: str = "none"
    text_dim: int = 384

    def __post_init__(self) -> None:
        if self.item_text not in ITEM_TEXT_MODES:
            raise ConfigError(f"item_text must be one of {ITEM_TEXT_MODES}, "
                              f"got {self.item_text!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.max_seq_len < 2:
            raise ConfigError(f"max_seq_len must be >= 2, got {self.max_seq_len}")

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


class SASRec(nn.Module):
    """Causal transformer over item histories, scoring the whole catalog."""

    text_table: torch.Tensor

    def __init__(self, n_items: int, config: ModelConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.config = config
        bert_config = BertConfig(
            vocab_size=n_items + 1,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=4 * config.hidden_size,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.attention_dropout,
            max_position_embeddings=config.max_seq_len,
            initializer_range=config.init_std,
            type_vocab_size=1,
            pad_token_id=0,
            is_decoder=True,
        )
        # Eager attention exports as plain MatMul/Softmax that onnxruntime's optimizer fuses.
        bert_config._attn_implementation = "eager"
        self.bert = BertModel(bert_config, add_pooling_layer=False)
        # A per-item bias carries the popularity prior, so the transformer learns the rest.
        self.item_bias = nn.Parameter(torch.zeros(n_items), requires_grad=config.item_bias)
        self.text_proj: nn.Parameter | None = None
        if config.item_text == "side":
            # Zeros draw no random numbers and start the model exactly as without text;
            # row 0 of the table (padding) stays zero.
            self.register_buffer("text_table", torch.zeros(n_items + 1, config.text_dim))
            self.text_proj = nn.Parameter(torch.zeros(config.hidden_size, config.text_dim))

    def load_item_embeddings(self, item_embeddings: torch.Tensor) -> None:
        """Start from pre-trained item embeddings (rows for item indices 1..N)."""
        with torch.no_grad():
            self.bert.embeddings.word_embeddings.weight[1:].copy_(item_embeddings)

    def load_item_text(self, text: torch.Tensor) -> None:
        """Fill the frozen text table (rows for item indices 1..N); ``item_text="side"`` only."""
        if self.text_proj is None:
            raise ConfigError("load_item_text needs ModelConfig(item_text='side')")
        with torch.no_grad():
            self.text_table[1:].copy_(text)

    def item_vectors(self) -> torch.Tensor:
        """Every item's input/output vector ``[n_items + 1, hidden]`` (row 0 is padding)."""
        weight = self.bert.embeddings.word_embeddings.weight
        if self.text_proj is None:
            return weight
        return weight + F.linear(self.text_table, self.text_proj)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Contextual states ``[batch, seq, hidden]`` for left-padded ``input_ids``."""
        seq_len = input_ids.shape[1]
        positions = torch.arange(seq_len - 1, -1, -1, device=input_ids.device)
        positions = positions.unsqueeze(0).expand_as(input_ids)
        ids_or_vectors: dict[str, torch.Tensor] = (
            {"input_ids": input_ids} if self.text_proj is None
            else {"inputs_embeds": F.embedding(input_ids, self.item_vectors(), padding_idx=0)})
        out = self.bert(
            **ids_or_vectors,
            attention_mask=(input_ids > 0).long(),
            position_ids=positions,
            token_type_ids=torch.zeros_like(input_ids),
        )
        return out.last_hidden_state

    def item_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Dot product of states with every real item's embedding (padding excluded)."""
        return states @ self.item_vectors()[1:].T + self.item_bias

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Scores ``[batch, n_items]`` for the next item after each history."""
        return self.item_logits(self.hidden_states(input_ids)[:, -1, :])
