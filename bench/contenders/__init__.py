"""Baseline servers measured beside recdrill in the same run, on the same model.

Each server contender is a module run as a child process on 127.0.0.1 (see
:class:`~bench.contenders.process.ServerProcess`); the raw onnxruntime limit is measured in
process. Modules are named in :data:`SERVERS` and imported lazily.
"""

from __future__ import annotations

from bench.contenders.process import ServerProcess, free_port

__all__ = ["SERVERS", "ServerProcess", "free_port"]

SERVERS: dict[str, str] = {
    "fastapi-ort": "bench.contenders.fastapi_ort",
    "flask-torch": "bench.contenders.flask_torch",
}
