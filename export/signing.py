"""Signing keys and artifact signatures, in the OpenSSF Model Signing format, offline.

An artifact is signed with an elliptic-curve P-256 private key by the ``model-signing``
package (private-key method: a Sigstore bundle holding a DSSE envelope, no transparency log,
no network). The signature covers every file of the directory, manifest.json included, and is
written inside it as model.sig, which is itself left out of what is signed.

Example:
    >>> key_id = generate_signing_key("keys/signing.pem", "keys/signing.pub")  # doctest: +SKIP
    >>> manifest = build_manifest(..., signing={"method": SIGNING_METHOD, "key_id": key_id})
    >>> write_manifest("art/", manifest)  # doctest: +SKIP
    >>> sign_artifact("art/", "keys/signing.pem")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from durable import atomic_write_bytes, atomic_writer
from export.errors import ArtifactVerificationError, SigningError
from export.manifest import SIGNATURE_FILE, check_directory, read_manifest

__all__ = [
    "SIGNATURE_FILE",
    "SIGNING_METHOD",
    "generate_signing_key",
    "key_id_of",
    "read_signed_digests",
    "sign_artifact",
]

SIGNING_METHOD = "model-signing/ec-p256"


def generate_signing_key(
    private_path: str | os.PathLike[str],
    public_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> str:
    """Create an EC P-256 key pair as PEM files and return its key id.

    The private key is written atomically with mode 0600; an existing one is never replaced
    unless ``overwrite`` is set, since artifacts signed with it would become unverifiable.
    """
    if Path(private_path).exists() and not overwrite:
        raise SigningError(
            f"{private_path} already exists; refusing to replace a signing key (artifacts "
            "signed with it would no longer verify): choose another path or pass overwrite=True"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with atomic_writer(private_path) as fh:
        os.fchmod(fh.fileno(), 0o600)  # before any key byte is written
        fh.write(private_pem)
    with atomic_writer(public_path) as fh:
        os.fchmod(fh.fileno(), 0o644)
        fh.write(public_pem)
    return _key_id(key.public_key())


def key_id_of(public_path: str | os.PathLike[str]) -> str:
    """Key id of a PEM public key: the first 16 hex digits of sha256 of its DER encoding."""
    try:
        public_key = serialization.load_pem_public_key(Path(public_path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(
            f"cannot read the public key {public_path} ({exc}); expected a PEM public key as "
            "written by generate_signing_key: check the path"
        ) from exc
    return _key_id(public_key)


def sign_artifact(
    directory: str | os.PathLike[str], private_key_path: str | os.PathLike[str]
) -> None:
    """Sign the artifact in ``directory`` with the private key, writing ``directory/model.sig``.

    Refuses (SigningError) unless manifest.json names this key and describes the directory
    exactly, so that a signed artifact always verifies.
    """
    root = Path(directory)
    private_key = _load_private_key(private_key_path)
    manifest = read_manifest(root)
    key_id = _key_id(private_key.public_key())
    expected = {"method": SIGNING_METHOD, "key_id": key_id}
    if manifest.signing != expected:
        raise SigningError(
            f"{root}/manifest.json has signing {manifest.signing!r}, expected {expected!r} for "
            f"the key {private_key_path}; rebuild the manifest with signing={expected!r}"
        )
    try:
        check_directory(root, manifest)
    except ArtifactVerificationError as exc:
        raise SigningError(f"refusing to sign {root}: {exc}") from exc

    import model_signing  # deferred: it pulls in sigstore and pydantic (~0.3 s)

    hashing = model_signing.hashing.Config()  # type: ignore[no-untyped-call]
    hashing.set_ignored_paths(paths=[SIGNATURE_FILE], ignore_git_paths=False)
    config = model_signing.signing.Config()  # type: ignore[no-untyped-call]
    config.set_hashing_config(hashing)
    config.use_elliptic_key_signer(private_key=private_key_path)
    with tempfile.TemporaryDirectory(prefix="recdrill-sign-") as scratch:
        # model-signing writes the bundle in place, non-atomically: write aside, then rename in.
        bundle_path = Path(scratch) / SIGNATURE_FILE
        try:
            config.sign(root, bundle_path)
        except (OSError, ValueError) as exc:
            raise SigningError(f"model-signing could not sign {root}: {exc}") from exc
        atomic_write_bytes(root / SIGNATURE_FILE, bundle_path.read_bytes())


def read_signed_digests(
    directory: str | os.PathLike[str], public_key_path: str | os.PathLike[str]
) -> dict[str, str]:
    """Verify ``directory/model.sig`` with the public key; return the signed ``{path: sha256}``.

    Raises SigningError when model.sig is absent, corrupt, or not made by this key.
    """
    signature_path = Path(directory) / SIGNATURE_FILE
    if not signature_path.is_file():
        raise SigningError(f"{signature_path} not found")
    # The public model_signing.verifying API hashes the directory itself and reports a mismatch
    # as one string; the bundle verifier below returns the signed digests instead, so that
    # verify names the exact file that changed and hashes each file once. Pinned by the tests.
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    try:
        signature = sign_sigstore_pb.Signature.read(signature_path)
        signed = sign_ec_key.Verifier(Path(public_key_path)).verify(signature)
        params = signed.serialization_type
        digests = {rd.identifier: rd.digest for rd in signed.resource_descriptors()}
    except Exception as exc:  # untrusted input: any parse or crypto failure means "bad"
        raise SigningError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    if params.get("method") != "files" or any(d.algorithm != "sha256" for d in digests.values()):
        raise SigningError(f"expected whole-file sha256 digests, found serialization {params!r}")
    return {path: digest.digest_hex for path, digest in digests.items()}


def _load_private_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(
            f"cannot read the private key {path} ({exc}); expected an unencrypted PEM key as "
            "written by generate_signing_key: check the path"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningError(
            f"{path}: expected an EC P-256 private key, found {type(key).__name__}; "
            "create one with generate_signing_key"
        )
    return key


def _key_id(public_key: PublicKeyTypes) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]
