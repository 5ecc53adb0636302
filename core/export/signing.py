"""Signed bundles: an Ed25519 signature over the canonical manifest, in ``manifest.sig``.

The manifest lists every file of the bundle with its sha256, and loading refuses a file whose
hash differs and a file the manifest does not list; so a valid signature over the manifest
vouches for every byte of the bundle.  Hashes alone only catch accidents (anyone who changes
a file can update its hash); the signature needs the private key.

    tuneforge keygen keys/release              # keys/release.pem (0600) + keys/release.pub.pem
    tuneforge export RUN --sign keys/release.pem
    tuneforge predict BUNDLE --trust keys/release.pub.pem --text "..."
    Predictor.load(BUNDLE, trust="keys/release.pub.pem")

``cryptography`` is imported only here, and only when a key is used (export with ``--sign``,
load with ``trust=``): an unsigned load imports nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Union

from ..errors import BundleError, UsageError

SIGNATURE = "manifest.sig"
ALGORITHM = "ed25519"
_HINT = "re-export with --sign, or check which key signed it (manifest.sig names its key id)"

Trust = Union[str, os.PathLike, bytes, Any]   # a PEM file, PEM bytes, 32 raw bytes, a key object, or a list


def canonical_manifest(manifest: dict) -> bytes:
    """The bytes that are signed: the manifest as sorted, compact JSON (formatting cannot matter)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - cryptography is a dependency
        raise UsageError("signed bundles need the 'cryptography' package", hint="pip install cryptography") from None
    return ed25519, serialization, InvalidSignature


def key_id(public_key) -> str:
    """Short fingerprint of a public key: sha256 of its 32 raw bytes, first 16 hex digits."""
    _, serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: str | os.PathLike, public_path: str | os.PathLike | None = None,
                     ) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: the private key (PKCS#8 PEM, mode 0600, never overwritten;
    ``.pem`` is appended if missing) and the public key (``<name>.pub.pem`` beside it by default).
    Returns both paths."""
    ed25519, serialization, _ = _crypto()
    private_path = Path(private_path)
    if private_path.suffix != ".pem":
        private_path = private_path.with_name(private_path.name + ".pem")
    if public_path is None:
        public_path = private_path.with_name(private_path.name[:-len(".pem")] + ".pub.pem")
    public_path = Path(public_path)
    for p in (private_path, public_path):
        if p.exists():
            raise UsageError(f"{p} already exists", hint="pick another name; keys are never overwritten")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(private_path, 0o600)  # whatever the umask said
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def load_private_key(source: str | os.PathLike | bytes):
    """An Ed25519 private key from a PEM file or PEM bytes (UsageError naming the file otherwise)."""
    ed25519, serialization, _ = _crypto()
    where, data = _read(source, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{where} is not an unencrypted PEM private key ({e})",
                         hint="create one with `tuneforge keygen PATH`") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UsageError(f"{where} is not an Ed25519 key", hint="create one with `tuneforge keygen PATH`")
    return key


def load_public_keys(trust: Trust) -> list:
    """Ed25519 public keys from ``trust``: a PEM file path, PEM bytes, 32 raw bytes, a key
    object, or a list/tuple of those (any of them may have signed the bundle)."""
    ed25519, serialization, _ = _crypto()
    if isinstance(trust, (list, tuple)):
        keys = [k for item in trust for k in load_public_keys(item)]
        if not keys:
            raise UsageError("trust is an empty list of keys")
        return keys
    if isinstance(trust, ed25519.Ed25519PublicKey):
        return [trust]
    if isinstance(trust, bytes) and len(trust) == 32:
        return [ed25519.Ed25519PublicKey.from_public_bytes(trust)]
    where, data = _read(trust, "trusted key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        if b"PRIVATE KEY" in data:
            raise UsageError(f"{where} is a private key; trust takes the public key",
                             hint="pass the .pub.pem written by `tuneforge keygen`") from None
        raise UsageError(f"{where} is not a PEM public key",
                         hint="pass the .pub.pem written by `tuneforge keygen`") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise UsageError(f"{where} is not an Ed25519 public key")
    return [key]


def _read(source, what: str) -> tuple[str, bytes]:
    if isinstance(source, bytes):
        return f"the {what} bytes", source
    if not isinstance(source, (str, os.PathLike)):
        raise UsageError(f"{what} must be a file path or PEM bytes, got {type(source).__name__}")
    path = Path(source)
    try:
        return str(path), path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from None


def sign_bundle(bundle_dir: str | os.PathLike, key) -> Path:
    """Sign ``bundle_dir/manifest.json`` with ``key`` (a private key, or its PEM file/bytes);
    writes ``manifest.sig`` beside it and returns its path."""
    from .bundle import MANIFEST

    _crypto()
    if not hasattr(key, "sign"):
        key = load_private_key(key)
    root = Path(bundle_dir)
    manifest = _manifest_dict(root / MANIFEST)
    signature = key.sign(canonical_manifest(manifest))
    record = {"algorithm": ALGORITHM, "key_id": key_id(key.public_key()),
              "signature": base64.b64encode(signature).decode("ascii")}
    path = root / SIGNATURE
    tmp = root / (SIGNATURE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def verify_signature(bundle_dir: str | os.PathLike, trust: Trust, *, manifest: dict | None = None) -> str:
    """Check ``manifest.sig`` against the trusted key(s); returns the signing key's id.
    ``manifest``: the parsed ``manifest.json`` the caller goes on to use (read here if None).

    BundleError when the bundle is unsigned, the signature is malformed, or no trusted key
    made it (a tampered manifest, or another key)."""
    from .bundle import MANIFEST

    _, _, InvalidSignature = _crypto()
    keys = load_public_keys(trust)
    root = Path(bundle_dir)
    sig_path = root / SIGNATURE
    if not sig_path.is_file():
        raise BundleError(f"bundle {root} is not signed (no {SIGNATURE}) but a trusted key was given",
                          hint="export it with `tuneforge export RUN --sign KEY`, or sign it with "
                               "`tuneforge sign BUNDLE --key KEY`")
    try:
        record = json.loads(sig_path.read_text(encoding="utf-8"))
        if record.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {record.get('algorithm')!r}, expected {ALGORITHM}")
        signature = base64.b64decode(record["signature"], validate=True)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleError(f"bundle {root}: {SIGNATURE} is malformed ({e})", hint=_HINT) from None
    message = canonical_manifest(manifest if manifest is not None else _manifest_dict(root / MANIFEST))
    for key in keys:
        try:
            key.verify(signature, message)
            return key_id(key)
        except InvalidSignature:
            continue
    trusted = ", ".join(key_id(k) for k in keys)
    raise BundleError(f"bundle {root}: the signature does not match the trusted key ({trusted}); "
                      f"{SIGNATURE} names key {record.get('key_id')!r}: the manifest was changed after "
                      "signing, or another key signed it", hint=_HINT)


def _manifest_dict(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} cannot be read: {e}") from None
