"""The command-line vocabulary every recdrill CLI shares: one spelling, one variable, one help.

Each shared concept is declared once here as a ``typer.Option`` and composed into a command's
signature with ``Annotated``; the command supplies only the type and default. Durations carry
their unit in the flag (``--timeout-s``), and a model version is always ``--version``.

=================  =========================  ==========================================
concept            flag                       environment
=================  =========================  ==========================================
Ray cluster        ``--ray-address``          ``RAY_ADDRESS``
signed artifact    ``--artifact``             ``RECDRILL_ARTIFACT``
checkpoint         ``--checkpoint``           ``RECDRILL_CHECKPOINT``
public key         ``--public-key``           ``RECDRILL_PUBLIC_KEY``
signing key        ``--signing-key``          ``RECDRILL_SIGNING_KEY``
version store      ``--store``                ``RECDRILL_STORE``
store key files    ``--store-key`` (repeat)   ``RECDRILL_STORE_KEY_FILES`` (space-separated)
model version      ``--version``              ``RECDRILL_VERSION``
=================  =========================  ==========================================

``RECDRILL_STORE_KEYS`` is not a flag: it carries key *material* (base64, comma-separated) for
processes that cannot read key files (see ``replication.keys``).

Example:
    >>> from typing import Annotated
    >>> from durable.options import RAY_ADDRESS
    >>> def status(ray_address: Annotated[str | None, RAY_ADDRESS] = None) -> None: ...
"""

from __future__ import annotations

from typing import Any

import typer

__all__ = [
    "ARTIFACT",
    "CHECKPOINT",
    "ENV_STORE_KEY_FILES",
    "PUBLIC_KEY",
    "RAY_ADDRESS",
    "SIGNING_KEY",
    "STORE",
    "STORE_KEY",
    "VERSION",
]

ENV_STORE_KEY_FILES = "RECDRILL_STORE_KEY_FILES"


def _option(flag: str, envvar: str, help: str, **extra: Any) -> Any:
    return typer.Option(flag, envvar=envvar, help=help, show_envvar=True, **extra)


RAY_ADDRESS = _option(
    "--ray-address", "RAY_ADDRESS",
    "Ray cluster to use (e.g. auto, ray://host:10001, host:6379); default: an embedded one.")
ARTIFACT = _option("--artifact", "RECDRILL_ARTIFACT",
                   "Signed artifact directory (verified before use).")
CHECKPOINT = _option("--checkpoint", "RECDRILL_CHECKPOINT",
                     "Training checkpoint directory (held-out items for HR/NDCG@10).")
PUBLIC_KEY = _option("--public-key", "RECDRILL_PUBLIC_KEY",
                     "Artifact signing public key (PEM).")
SIGNING_KEY = _option("--signing-key", "RECDRILL_SIGNING_KEY",
                      "Artifact signing private key (PEM), for commands that publish versions.")
STORE = _option("--store", "RECDRILL_STORE", "Version store: a URL or path.")
STORE_KEY = _option("--store-key", ENV_STORE_KEY_FILES,
                    "Store encryption key file (AES-256); repeat for several, the first is "
                    "active, the others still decrypt.")
VERSION = _option("--version", "RECDRILL_VERSION",
                  "Committed model version (each command says its default).")
