"""The bundle on disk: its manifest, integrity check and atomic writing.

A bundle is ``exports/<name>/<version>/``; ``manifest.json`` lists every other
file with its sha256 and size.  Standard library only: the runtime loads
bundles through this module without torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ..errors import BundleError
from ..runinfo import sha256_file

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TASK_KINDS = ("classification", "multilabel", "pair", "embedding", "token")  # = modeling.TASK_KINDS
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^v(\d+)$")
_REEXPORT = "re-export the training run (tuneforge export RUN_DIR)"


def file_table(root: str | Path) -> dict[str, dict]:
    """``{relative/path: {"sha256", "size"}}`` for every file under ``root`` but the manifest."""
    root = Path(root)
    table = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != MANIFEST:
            table[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return table


def _bad(msg: str) -> BundleError:
    return BundleError(f"invalid {MANIFEST}: {msg}", hint=_REEXPORT)


@dataclass
class BundleManifest:
    """Everything a bundle says about itself (``manifest.json``)."""

    name: str
    version: str
    task: str
    kind: str
    base_model: str
    labels: list[str]
    inputs: list[str]
    output: dict                     # {"name", "shape"}
    tokenizer: dict                  # {"file", "max_length", "pad_id", "pad_token"}
    variants: dict[str, dict]        # shipped: name -> {"file", "description", ...}
    defaults: dict[str, str]         # provider -> variant
    files: dict[str, dict]           # relative path -> {"sha256", "size"}
    rejected: dict[str, str] = field(default_factory=dict)   # variant -> why not shipped
    parity: dict = field(default_factory=dict)
    measurements: dict = field(default_factory=dict)
    providers: dict = field(default_factory=dict)            # planner table
    run: dict = field(default_factory=dict)                  # id, metrics, ...
    versions: dict = field(default_factory=dict)
    created: str = ""
    triton: dict | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if not isinstance(self.schema_version, int) or self.schema_version < 1:
            raise _bad(f"schema_version must be a positive integer, got {self.schema_version!r}")
        if self.schema_version > SCHEMA_VERSION:
            raise BundleError(f"bundle manifest schema {self.schema_version} is newer than this "
                              f"tuneforge reads ({SCHEMA_VERSION})", hint="upgrade tuneforge")
        for key in ("name", "version"):
            value = getattr(self, key)
            if not isinstance(value, str) or not _SAFE.match(value):
                raise _bad(f"{key} must be letters, digits, '.', '_' or '-', got {value!r}")
        if self.kind not in TASK_KINDS:
            raise _bad(f"unknown task kind {self.kind!r}")
        for key in ("variants", "defaults", "files", "rejected", "output", "tokenizer"):
            if not isinstance(getattr(self, key), dict):
                raise _bad(f"{key} must be an object")
        if not isinstance(self.labels, list) or not isinstance(self.inputs, list):
            raise _bad("labels and inputs must be lists")
        if not self.variants:
            raise _bad("no variants")
        for rel, info in self.files.items():
            if rel.startswith(("/", "\\")) or ".." in Path(rel).parts:
                raise _bad(f"file path {rel!r} leaves the bundle")
            if (not isinstance(info, dict) or not _HEX64.match(str(info.get("sha256", "")))
                    or not isinstance(info.get("size"), int)):
                raise _bad(f"files[{rel!r}] needs a sha256 and a size")
        for v, info in self.variants.items():
            if not isinstance(info, dict) or info.get("file") not in self.files:
                raise _bad(f"variant {v!r} names a file that is not in the file list")
        for p, v in self.defaults.items():
            if v not in self.variants:
                raise _bad(f"default for {p} is {v!r}, which is not shipped")
        if self.tokenizer.get("file") not in self.files:
            raise _bad("the tokenizer file is not in the file list")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BundleManifest":
        if not isinstance(d, dict):
            raise _bad("top level must be an object")
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(d))
        if missing:
            raise _bad("missing " + ", ".join(missing))
        return cls(**{k: v for k, v in d.items() if k in known})

    # -- convenience ---------------------------------------------------------
    def variant_file(self, variant: str) -> str:
        return self.variants[variant]["file"]

    @property
    def model_id(self) -> str:
        return f"{self.name}/{self.version}"


def resolve_bundle_dir(path: str | Path) -> Path:
    """A bundle folder, or ``exports/<name>`` (its newest ``vN``)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if path.is_dir():
        versions = sorted((int(m.group(1)), p) for p in path.iterdir()
                          if (m := _VERSION.match(p.name)) and (p / MANIFEST).is_file())
        if versions:
            return versions[-1][1]
    raise BundleError(f"{path} is not a tuneforge bundle (no {MANIFEST})",
                      hint="pass exports/<name>/<version> as written by tuneforge export")


def load_manifest(bundle_dir: str | Path) -> BundleManifest:
    path = Path(bundle_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} is missing", hint=_REEXPORT) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} cannot be read: {e}", hint=_REEXPORT) from None
    return BundleManifest.from_dict(data)


def verify_bundle(bundle_dir: str | Path) -> BundleManifest:
    """Load the manifest and check every listed file's size and sha256.

    Raises :class:`BundleError` naming the first missing or modified file.
    """
    root = resolve_bundle_dir(bundle_dir)
    manifest = load_manifest(root)
    for rel, info in manifest.files.items():
        p = root / rel
        if not p.is_file():
            raise BundleError(f"bundle {root}: {rel} is missing", hint=_REEXPORT)
        if p.stat().st_size != info["size"] or sha256_file(p) != info["sha256"]:
            raise BundleError(f"bundle {root}: {rel} failed its integrity check (sha256 differs "
                              "from manifest.json): the file was modified after export",
                              hint=_REEXPORT + " or restore the original file")
    return manifest


def next_version(name_dir: str | Path) -> str:
    """``v1`` for a new name, else one past the highest existing ``vN``."""
    name_dir = Path(name_dir)
    taken = [int(m.group(1)) for p in name_dir.iterdir()
             if (m := _VERSION.match(p.name))] if name_dir.is_dir() else []
    return f"v{max(taken, default=0) + 1}"


def safe_name(text: str) -> str:
    """Turn a task or run name into a folder name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-._")[:128]
    return name or "model"


class AtomicBundle:
    """Build a bundle in ``<out>/<name>/.tmp-<version>-<id>`` and rename it into place.

    On any exception (KeyboardInterrupt included) the temp folder is removed,
    and so is ``<out>/<name>`` when this writer created it and it is empty:
    an interrupted export leaves nothing behind.
    """

    def __init__(self, out_dir: str | Path, name: str, version: str | None = None):
        if not _SAFE.match(name):
            raise BundleError(f"bundle name {name!r} is not a safe folder name",
                              hint="use letters, digits, '.', '_' and '-'")
        if version is not None and not _SAFE.match(str(version)):
            raise BundleError(f"bundle version {version!r} is not a safe folder name",
                              hint="use e.g. v3, or leave it out to auto-increment")
        self.out_dir, self.name = Path(out_dir), name
        self.name_dir = self.out_dir / name
        self.version = str(version) if version is not None else next_version(self.name_dir)
        self.final = self.name_dir / self.version
        if self.final.exists():
            raise BundleError(f"bundle {self.final} already exists",
                              hint="pick another version, or leave version out to auto-increment")
        self.tmp: Path | None = None
        self._created_name_dir = False
        self.committed = False

    def __enter__(self) -> "AtomicBundle":
        self._created_name_dir = not self.name_dir.exists()
        self.name_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = self.name_dir / f".tmp-{self.version}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        return self

    def commit(self) -> Path:
        try:
            os.rename(self.tmp, self.final)
        except OSError as e:
            raise BundleError(f"cannot move the finished bundle to {self.final}: {e}",
                              hint="another export wrote this version at the same time; retry") from e
        self.committed = True
        return self.final

    def __exit__(self, exc_type, exc, tb):
        if not self.committed:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
            if self._created_name_dir:
                try:
                    self.name_dir.rmdir()  # only if empty
                except OSError:
                    pass
        return False
