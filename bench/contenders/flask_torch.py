"""Baseline: the naive Flask + PyTorch eager server of the original write-up.

Loads the training checkpoint's state_dict (``training.checkpoint.load_checkpoint``), runs the
model eagerly with torch's default threads, and serves one request at a time (Werkzeug's
development server, ``threaded=False``). Request logging is off, as for every contender.
Run: ``python -m bench.contenders.flask_torch --checkpoint C --port P``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ["build_app", "main"]


def build_app(checkpoint: Path) -> Any:
    """The Flask app over one checkpoint (held-out-test histories: each sequence minus its last)."""
    import numpy as np
    import torch
    from flask import Flask, jsonify, request
    from pydantic import ValidationError

    from bench.contenders.catalog import answer, left_pad_one
    from export.fallback import build_fallback
    from serving.catalog import Catalog
    from serving.errors import InvalidRequest
    from serving.schemas import RecommendRequest
    from training.checkpoint import item_table, load_checkpoint

    ck = load_checkpoint(checkpoint)
    model = ck.model.eval()
    histories = [np.asarray(s[:-1], dtype=np.int64) for s in ck.data.sequences]
    catalog = Catalog("checkpoint", model.config.max_seq_len, item_table(ck.data, ck.items),
                      dict(zip(map(str, ck.data.user_ids), histories, strict=True)),
                      build_fallback(histories, ck.data.n_items))
    app = Flask("flask-torch")

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.post("/v1/recommend")
    def recommend() -> Any:
        try:
            query = catalog.resolve(RecommendRequest.model_validate(request.get_json(force=True)))
        except (ValidationError, InvalidRequest) as exc:
            return jsonify(error=str(exc)), 400
        with torch.no_grad():
            ids = torch.from_numpy(left_pad_one(query.seq, catalog.max_seq_len))
            scores = model(ids)[0].numpy()
        return jsonify(answer(catalog, scores, query, "flask-torch"))

    return app


def main() -> None:
    """Serve on 127.0.0.1:PORT, one request at a time, until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    build_app(args.checkpoint).run(host="127.0.0.1", port=args.port, threaded=False)


if __name__ == "__main__":
    main()
