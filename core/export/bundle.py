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
import signal
import socket
import threading
import time
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ..errors import BundleError
from ..runinfo import sha256_file
from .signing import SIGNATURE

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TASK_KINDS = ("classification", "multilabel", "pair", "embedding", "token")  # = modeling.TASK_KINDS
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^v(\d+)$")
_REEXPORT = "re-export the training run (tuneforge export RUN_DIR)"
OWNER = ".tuneforge-export.json"   # inside a temp folder while an export builds it: pid, host
NOT_LISTED = (MANIFEST, SIGNATURE)   # the only files of a bundle its manifest does not list
STALE_WITHOUT_OWNER_S = 6 * 3600    # a temp folder with no owner record is stale after this long
MAX_TOKENS = 65_536     # tokenizer.max_length above this is not a model, it is a memory blow-up


def file_table(root: str | Path) -> dict[str, dict]:
    """``{relative/path: {"sha256", "size"}}`` for every file under ``root`` but the manifest,
    its signature and an export's owner record."""
    root = Path(root)
    table = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in (*NOT_LISTED, OWNER):
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
        self._check_values()
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

    def _check_values(self) -> None:
        """Types and ranges of the fields the runtime uses: a hand-edited or corrupted manifest
        is one line naming the field, never a TypeError or a 10^9-token buffer later."""
        def is_int(v, lo, hi):
            return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

        tok = self.tokenizer
        if not is_int(tok.get("max_length"), 1, MAX_TOKENS):
            raise _bad(f"tokenizer.max_length must be an integer in 1..{MAX_TOKENS}, got {tok.get('max_length')!r}")
        if not is_int(tok.get("pad_id", 0), 0, 10_000_000):
            raise _bad(f"tokenizer.pad_id must be a non-negative integer, got {tok.get('pad_id')!r}")
        if not isinstance(tok.get("file"), str):
            raise _bad(f"tokenizer.file must be a file name, got {tok.get('file')!r}")
        for key in ("labels", "inputs"):
            for i, v in enumerate(getattr(self, key)):
                if not isinstance(v, str) or (key == "inputs" and not v):
                    raise _bad(f"{key}[{i}] must be a string, got {v!r}")
        shape = self.output.get("shape")
        if not isinstance(self.output.get("name"), str) or not isinstance(shape, list) or not shape or not all(
                (is_int(d, 0, 1_000_000)) or isinstance(d, str) or d is None for d in shape):
            raise _bad(f"output must have a name and a shape list of sizes, got {self.output!r}")
        for v, info in self.variants.items():
            if not isinstance(info, dict) or not isinstance(info.get("file"), str):
                raise _bad(f"variants[{v!r}].file must be a file name")
        for p, v in self.defaults.items():
            if not isinstance(v, str):
                raise _bad(f"defaults[{p!r}] must be a variant name, got {v!r}")
        for rel, info in self.files.items():
            if isinstance(info, dict) and not is_int(info.get("size"), 0, 1 << 40):
                raise _bad(f"files[{rel!r}].size must be a byte count >= 0, got {info.get('size')!r}")
        for key in ("rejected", "parity", "measurements", "providers", "run", "versions"):
            if not isinstance(getattr(self, key), dict):
                raise _bad(f"{key} must be an object, got {type(getattr(self, key)).__name__}")
        if not isinstance(self.created, str) or not isinstance(self.task, str) \
                or not isinstance(self.base_model, str):
            raise _bad("task, base_model and created must be strings")
        if self.triton is not None and not isinstance(self.triton, dict):
            raise _bad("triton must be an object or null")

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
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except (TypeError, ValueError, AttributeError) as e:  # a field of a wrong type deep inside
            raise _bad(f"a field has the wrong type ({e})") from None

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


def read_manifest_dict(bundle_dir: str | Path) -> dict:
    """``manifest.json`` parsed, not yet validated."""
    path = Path(bundle_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} is missing", hint=_REEXPORT) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"{path} cannot be read: {e}", hint=_REEXPORT) from None


def load_manifest(bundle_dir: str | Path, data: dict | None = None) -> BundleManifest:
    """The validated manifest of ``bundle_dir`` (``data``: its already parsed JSON)."""
    path = Path(bundle_dir) / MANIFEST
    if data is None:
        data = read_manifest_dict(bundle_dir)
    try:
        return BundleManifest.from_dict(data)
    except BundleError as e:   # name the file: "<path>: <field> must be ..."
        message = e.message.removeprefix(f"invalid {MANIFEST}: ")
        raise BundleError(f"{path}: {message}", hint=e.hint) from None


def verify_bundle(bundle_dir: str | Path, trust=None) -> BundleManifest:
    """Load the manifest and check every listed file's size and sha256, and that the folder
    holds no file the manifest does not list (only ``manifest.json`` and ``manifest.sig``).

    ``trust``: a public key (PEM file path, PEM bytes, raw 32 bytes, or a list of them); the
    bundle must then carry a ``manifest.sig`` made by one of them (see :mod:`.signing`).
    Raises :class:`BundleError` naming the first missing, modified or unlisted file, or the
    signature problem.
    """
    root = resolve_bundle_dir(bundle_dir)
    data = read_manifest_dict(root)       # read once: the signed bytes are the ones used
    if trust is not None:
        from .signing import verify_signature

        verify_signature(root, trust, manifest=data)
    manifest = load_manifest(root, data)
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel not in manifest.files and rel not in NOT_LISTED and not p.is_dir():
            raise BundleError(f"bundle {root}: {rel} is not listed in {MANIFEST}: a file was added "
                              "after export", hint="remove it (bundles are read-only), or re-export")
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


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), to tell a reused pid from the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]   # field 22: starttime


def _owner_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
            "created": time.time()}


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # someone else's process: it exists
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return start is None or _process_start(pid) in (None, start)


def stale_temp_dirs(out_dir: str | Path) -> list[Path]:
    """Temp folders under ``out_dir/<name>/`` left by exports that are no longer running.

    A temp folder records its owner (pid, host, process start time) in ``.tuneforge-export.json``:
    it is stale when that process is gone (same host only: a folder owned by another host is
    never touched).  One without a readable record (killed before writing it) is stale once
    it is ``STALE_WITHOUT_OWNER_S`` old.
    """
    out_dir, host, stale = Path(out_dir), socket.gethostname(), []
    if not out_dir.is_dir():
        return stale
    for tmp in out_dir.glob("*/.tmp-*"):
        if not tmp.is_dir():
            continue
        try:
            owner = json.loads((tmp / OWNER).read_text(encoding="utf-8"))
            pid, owner_host, start = int(owner["pid"]), str(owner["host"]), owner.get("start")
        except (OSError, ValueError, KeyError, TypeError):
            try:
                age = time.time() - tmp.stat().st_mtime
            except OSError:
                continue
            if age > STALE_WITHOUT_OWNER_S:
                stale.append(tmp)
            continue
        if owner_host == host and not _alive(pid, start):
            stale.append(tmp)
    return stale


def remove_stale_temp_dirs(out_dir: str | Path) -> list[Path]:
    """Delete :func:`stale_temp_dirs` (and name folders they leave empty); returns what went."""
    removed = []
    for tmp in stale_temp_dirs(out_dir):
        shutil.rmtree(tmp, ignore_errors=True)
        if not tmp.exists():
            removed.append(tmp)
            try:
                tmp.parent.rmdir()   # only if empty
            except OSError:
                pass
    return removed


class ExportTerminated(SystemExit):
    """SIGTERM arrived during an export: raised in the main thread so the temp folder is removed
    on the way out; the process then exits with 143 (128 + SIGTERM) as if the signal had killed it."""

    def __init__(self):
        super().__init__(128 + signal.SIGTERM)


class AtomicBundle:
    """Build a bundle in ``<out>/<name>/.tmp-<version>-<id>`` and rename it into place.

    On any exception (KeyboardInterrupt included) the temp folder is removed,
    and so is ``<out>/<name>`` when this writer created it and it is empty:
    an interrupted export leaves nothing behind.  SIGTERM (in the main thread) raises
    :class:`ExportTerminated` for the same clean-up.  A kill that cannot be caught (SIGKILL,
    power loss) leaves the temp folder with its owner record; the next export under the same
    ``out`` removes it once its process is gone (:func:`remove_stale_temp_dirs`).
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
        self._old_handler, self._handler_set = None, False
        self.removed_stale: list[Path] = []

    def __enter__(self) -> "AtomicBundle":
        self.removed_stale = remove_stale_temp_dirs(self.out_dir)
        self._created_name_dir = not self.name_dir.exists()
        self.name_dir.mkdir(parents=True, exist_ok=True)
        self._catch_sigterm()
        self.tmp = self.name_dir / f".tmp-{self.version}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        (self.tmp / OWNER).write_text(json.dumps(_owner_record()), encoding="utf-8")
        return self

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set there; the stale sweep covers the rest
        fired = []

        def on_sigterm(signum, frame):
            if not fired:           # a second SIGTERM during the clean-up must not interrupt it
                fired.append(signum)
                raise ExportTerminated()

        self._old_handler = signal.signal(signal.SIGTERM, on_sigterm)
        self._handler_set = True

    def commit(self) -> Path:
        (self.tmp / OWNER).unlink(missing_ok=True)
        try:
            os.rename(self.tmp, self.final)
        except OSError as e:
            raise BundleError(f"cannot move the finished bundle to {self.final}: {e}",
                              hint="another export wrote this version at the same time; retry") from e
        self.committed = True
        return self.final

    def __exit__(self, exc_type, exc, tb):
        try:
            if not self.committed:
                if self.tmp is not None:
                    shutil.rmtree(self.tmp, ignore_errors=True)
                if self._created_name_dir:
                    try:
                        self.name_dir.rmdir()  # only if empty
                    except OSError:
                        pass
        finally:
            if self._handler_set:
                signal.signal(signal.SIGTERM, self._old_handler if self._old_handler is not None
                              else signal.SIG_DFL)
                self._handler_set = False
        return False
