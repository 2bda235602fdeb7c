"""recdrill: serve e-commerce recommendation models through faults, and prove it with drills.

The umbrella CLI (``recdrill``) and the end-to-end demo live here; each stage also runs
alone as ``python -m training|export|replication|...``.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
