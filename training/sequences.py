"""Turn variable-length item histories into fixed-size, left-padded training windows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def left_pad(histories: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """The last ``max_len`` items of each history, left-padded with 0, as int64 ``[B, L]``.

    Example:
        >>> left_pad([np.array([1, 2]), np.array([3, 4, 5, 6])], 3).tolist()
        [[0, 1, 2], [4, 5, 6]]
    """
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, hist in enumerate(histories):
        tail = np.asarray(hist[-max_len:], dtype=np.int64)
        if len(tail):
            out[row, max_len - len(tail):] = tail
    return out


def next_item_windows(train: Sequence[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Input/target windows for next-item training: target[t] is the item after input[t].

    Long histories are cut into several windows from the newest end, so older behaviour is
    trained on too. Padding targets are 0 (ignored by the loss).

    Example:
        >>> x, y = next_item_windows([np.array([1, 2, 3])], 4)
        >>> x.tolist(), y.tolist()
        ([[0, 0, 1, 2]], [[0, 0, 2, 3]])
    """
    inputs, targets = [], []
    for seq in train:
        if len(seq) < 2:
            continue
        for end in range(len(seq), 1, -max_len):
            window = seq[max(0, end - max_len - 1):end]
            inputs.append(window[:-1])
            targets.append(window[1:])
    return left_pad(inputs, max_len), left_pad(targets, max_len)
