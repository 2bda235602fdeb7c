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
    import torch
    from flask import Flask, jsonify, request
    from pydantic import ValidationError

    from bench.contenders.catalog import Catalog, InvalidInput, left_pad_one
    from serving.schemas import RecommendRequest
    from training.checkpoint import item_table, load_checkpoint

    ck = load_checkpoint(checkpoint)
    model = ck.model.eval()
    catalog = Catalog.build(item_table(ck.data, ck.items), ck.data.user_ids,
                            [s[:-1] for s in ck.data.sequences], model.config.max_seq_len,
                            "checkpoint")
    app = Flask("flask-torch")

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.post("/v1/recommend")
    def recommend() -> Any:
        try:
            req = RecommendRequest.model_validate(request.get_json(force=True))
            history = catalog.history_of(req)
        except (ValidationError, InvalidInput) as exc:
            return jsonify(error=str(exc)), 400
        with torch.no_grad():
            ids = torch.from_numpy(left_pad_one(history, catalog.max_seq_len))
            scores = model(ids)[0].numpy()
        return jsonify(catalog.answer(scores, history, req, "flask-torch"))

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
