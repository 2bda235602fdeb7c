"""Per-channel int8 dynamic quantisation of the raw (unoptimised) ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.parity import ScoreFn


def quantize_int8(raw: Path, out: Path) -> Path:
    """Quantise weights to int8 per channel (per-tensor lost too much here, see FIELD-NOTES).

    The raw export is quantised, not the optimised graph: ``quantize_dynamic`` fails on
    already-fused graphs.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(raw), str(out), per_channel=True, weight_type=QuantType.QInt8)
    return out


def ort_scorer(path: Path, threads: int = 1) -> ScoreFn:
    """A numpy scoring function over one onnxruntime CPU session."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def score(ids: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: np.ascontiguousarray(ids, np.int64)})[0])

    return score
