"""The recommend handler every onnxruntime baseline shares: one artifact's catalog and one ORT
session, answering serving's JSON contract. No web framework here; each contender wraps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contenders.catalog import answer, left_pad_one, load_catalog
from serving.catalog import Catalog
from serving.schemas import RecommendRequest

__all__ = ["OrtModel"]


@dataclass(frozen=True, eq=False)
class OrtModel:
    """Catalog + session; :meth:`recommend` raises ``InvalidRequest`` for unknown users/items.

    Example::

        model = OrtModel.load(Path("artifact"))
        model.recommend(RecommendRequest(user_id="1", k=10), replica="me")["items"][0]
    """

    catalog: Catalog
    session: Any

    @staticmethod
    def load(artifact: Path, threads: int = 1, model_file: str = "model.onnx") -> OrtModel:
        """Load the artifact's items, histories and model, and probe the session once."""
        import numpy as np
        import onnxruntime as ort

        from serving.runner import session_options

        session = ort.InferenceSession(str(artifact / model_file), session_options(threads),
                                       providers=["CPUExecutionProvider"])
        session.run(None, {"input_ids": np.ones((1, 1), dtype=np.int64)})
        return OrtModel(load_catalog(artifact), session)

    @property
    def version(self) -> str:
        return self.catalog.version

    def recommend(self, request: RecommendRequest, replica: str) -> dict[str, Any]:
        """Top-K for one request, in serving's answer shape."""
        query = self.catalog.resolve(request)
        ids = left_pad_one(query.seq, self.catalog.max_seq_len)
        scores = self.session.run(None, {"input_ids": ids})[0][0]
        return answer(self.catalog, scores, query, replica)
