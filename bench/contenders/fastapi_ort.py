"""Baseline: a plain FastAPI + uvicorn + onnxruntime server, serving's JSON contract.

What a competent engineer writes in an afternoon: one ORT session (one thread) per process, the
model called inline in an ``async`` handler (0.1 ms of work is cheaper than a threadpool hop),
uvloop + httptools, access log off. ``--workers N`` runs N uvicorn worker processes on one
socket (uvicorn's supervisor; each worker builds the app from the environment, see
:func:`app_from_env`). Run: ``python -m bench.contenders.fastapi_ort --artifact A --port P``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from serving.schemas import RecommendRequest  # module level: FastAPI resolves the annotation here

__all__ = ["ENV_ARTIFACT", "app_from_env", "build_app", "main"]

ENV_ARTIFACT = "RECDRILL_FASTAPI_ORT_ARTIFACT"
_ENV_THREADS = "RECDRILL_FASTAPI_ORT_THREADS"
_ENV_MODEL_FILE = "RECDRILL_FASTAPI_ORT_MODEL_FILE"


def build_app(artifact: Path, threads: int = 1, model_file: str = "model.onnx") -> Any:
    """The FastAPI app over one artifact (loads the session and probes it before returning)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from bench.contenders.ort_model import OrtModel
    from serving.errors import InvalidRequest

    model = OrtModel.load(artifact, threads, model_file)
    app = FastAPI(title="fastapi-ort baseline")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model_version": model.version, "pid": os.getpid()}

    @app.post("/v1/recommend")
    async def recommend(request: RecommendRequest) -> Any:
        try:
            return model.recommend(request, "fastapi-ort")
        except InvalidRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return app


def app_from_env() -> Any:
    """uvicorn factory for worker processes: the app for ``$RECDRILL_FASTAPI_ORT_ARTIFACT``."""
    return build_app(Path(os.environ[ENV_ARTIFACT]), int(os.environ.get(_ENV_THREADS, "1")),
                     os.environ.get(_ENV_MODEL_FILE, "model.onnx"))


def main() -> None:
    """Serve on 127.0.0.1:PORT until terminated."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-file", default="model.onnx")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes (one ORT session each)")
    args = parser.parse_args()
    options: dict[str, Any] = {"host": "127.0.0.1", "port": args.port, "log_level": "warning",
                               "access_log": False, "loop": "uvloop", "http": "httptools"}
    if args.workers == 1:
        uvicorn.run(build_app(args.artifact, args.threads, args.model_file), **options)
        return
    os.environ.update({ENV_ARTIFACT: str(args.artifact.resolve()),
                       _ENV_THREADS: str(args.threads), _ENV_MODEL_FILE: args.model_file})
    uvicorn.run("bench.contenders.fastapi_ort:app_from_env", factory=True, workers=args.workers,
                **options)


if __name__ == "__main__":
    main()
