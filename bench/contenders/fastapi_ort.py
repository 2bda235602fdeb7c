"""Baseline: a plain FastAPI + uvicorn + onnxruntime server, one process, serving's JSON contract.

What a competent engineer writes in an afternoon: one ORT session (one thread), the model
called inline in an ``async`` handler (0.1 ms of work is cheaper than a threadpool hop),
uvloop + httptools, access log off. Run: ``python -m bench.contenders.fastapi_ort --artifact A --port P``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from serving.schemas import RecommendRequest  # module level: FastAPI resolves the annotation here

__all__ = ["build_app", "main"]


def build_app(artifact: Path, threads: int = 1, model_file: str = "model.onnx") -> Any:
    """The FastAPI app over one artifact (loads the session and probes it before returning)."""
    import numpy as np
    import onnxruntime as ort
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from bench.contenders.catalog import Catalog, InvalidInput, left_pad_one

    catalog = Catalog.from_artifact(artifact)
    from serving.runner import session_options

    session = ort.InferenceSession(str(artifact / model_file), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    session.run(None, {"input_ids": np.ones((1, 1), dtype=np.int64)})  # probe
    app = FastAPI(title="fastapi-ort baseline")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "model_version": catalog.version}

    @app.post("/v1/recommend")
    async def recommend(request: RecommendRequest) -> Any:
        try:
            history = catalog.history_of(request)
        except InvalidInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        ids = left_pad_one(history, catalog.max_seq_len)
        scores = session.run(None, {"input_ids": ids})[0][0]
        return catalog.answer(scores, history, request, "fastapi-ort")

    return app


def main() -> None:
    """Serve on 127.0.0.1:PORT until terminated."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-file", default="model.onnx")
    args = parser.parse_args()
    app = build_app(args.artifact, args.threads, args.model_file)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")


if __name__ == "__main__":
    main()
