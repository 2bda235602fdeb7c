"""Serving stage: onnxruntime model runners behind Ray Serve (HTTP and gRPC).

Never imports torch or training/: replicas load ONNX with onnxruntime only.
"""

from __future__ import annotations

__all__: list[str] = []
