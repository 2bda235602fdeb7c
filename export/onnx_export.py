"""torch → ONNX for the sequential recommender, then onnxruntime graph optimisation.

Uses torch (the only export module that does); never imported by ``export/__init__``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from export.errors import ExportError

INPUT_NAME = "input_ids"
OUTPUT_NAME = "scores"
OPSET = 17


class _ExportWrapper(torch.nn.Module):
    """Keyword-free forward with eval mode pinned (transformers 5.x trap, see FIELD-NOTES)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)


def export_onnx(model: torch.nn.Module, path: Path, max_seq_len: int) -> Path:
    """Export ``model`` with dynamic batch and sequence axes to one self-contained file.

    Example:
        >>> export_onnx(model, Path("raw.onnx"), max_seq_len=50)  # doctest: +SKIP
    """
    wrapper = _ExportWrapper(model).eval()
    model.eval()
    example = torch.randint(1, 2, (2, max_seq_len), dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch", 1: "seq"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # the exporter raises many unrelated types
        raise ExportError(f"ONNX export failed: {exc}") from exc
    return path


def optimize_onnx(raw: Path, out: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Run onnxruntime's transformer optimizer; returns the fused-operator counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(raw), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1
    )
    optimized.save_model_to_file(str(out), use_external_data_format=False)
    fused = optimized.get_fused_operator_statistics()
    return {name: int(count) for name, count in fused.items() if count}
