"""Install and uninstall third-party plugins with pip, in the running interpreter.

``tuneforge plugins install SPEC`` first turns SPEC (a project folder, an sdist, a
wheel, or a name pip can find) into a wheel in a temp folder, reads the wheel's
metadata -- its name, version, ``tuneforge`` entry points and ``Requires-Dist:
tuneforge...`` -- and refuses it *before anything is installed* when it is not a
tuneforge plugin or was made for another tuneforge version.  Only then is the
wheel installed, with ``python -m pip`` of this interpreter.  No network is needed
with ``--no-index`` (and ``--no-build-isolation`` for a source folder).
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from . import __version__
from .errors import PluginError, UsageError
from .plugin_manager import ENTRY_POINT_GROUP

ENGINE = "tuneforge"


@dataclass
class WheelInfo:
    """What a plugin's wheel declares, read from its ``METADATA`` and ``entry_points.txt``."""

    path: str
    name: str
    version: str
    requires: list[str] = field(default_factory=list)
    entry_points: dict[str, str] = field(default_factory=dict)   # tuneforge group only: name -> module

    def __post_init__(self):
        if not self.name or not self.version:
            raise PluginError(f"{self.path}: wheel metadata has no Name or Version")

    @property
    def engine_requirement(self) -> str | None:
        """The ``tuneforge`` requirement that applies here (markers evaluated), or ``None``."""
        from packaging.requirements import InvalidRequirement, Requirement

        for line in self.requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if _normalise(req.name) != ENGINE:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an optional extra's requirement
            return str(req.specifier) or ""
        return None

    def to_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "version": self.version, "requires": self.requires,
                "entry_points": self.entry_points, "tuneforge_requirement": self.engine_requirement}


def _normalise(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def read_wheel(path: str | Path) -> WheelInfo:
    """Name, version, requirements and ``tuneforge`` entry points of a ``.whl`` file."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            meta_name = next((n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
            if meta_name is None:
                raise PluginError(f"{path}: not a wheel (no .dist-info/METADATA)")
            meta = Parser().parsestr(zf.read(meta_name).decode("utf-8"))
            ep_name = meta_name.replace("/METADATA", "/entry_points.txt")
            ep_text = zf.read(ep_name).decode("utf-8") if ep_name in names else ""
    except zipfile.BadZipFile:
        raise PluginError(f"{path}: not a wheel (bad zip file)") from None
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # entry-point names are case-sensitive
    parser.read_string(ep_text)
    eps = dict(parser.items(ENTRY_POINT_GROUP)) if parser.has_section(ENTRY_POINT_GROUP) else {}
    return WheelInfo(path=str(path), name=meta.get("Name", ""), version=meta.get("Version", ""),
                     requires=meta.get_all("Requires-Dist") or [], entry_points=eps)


def check_engine_version(info: WheelInfo, engine_version: str = __version__) -> None:
    """Raise :class:`PluginError` unless ``info`` is a tuneforge plugin made for ``engine_version``."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if not info.entry_points:
        raise PluginError(f"{info.name} {info.version} is not a tuneforge plugin (no entry point in the "
                          f"{ENTRY_POINT_GROUP!r} group); nothing installed",
                          hint="add [project.entry-points.tuneforge] to its pyproject.toml")
    spec = info.engine_requirement
    if not spec:
        return  # no (or an unversioned) tuneforge requirement: any version goes
    try:
        ok = SpecifierSet(spec).contains(engine_version, prereleases=True)
    except InvalidSpecifier:  # pragma: no cover - packaging already parsed it
        ok = False
    if not ok:
        raise PluginError(f"{info.name} {info.version} requires tuneforge{spec}, but this is tuneforge "
                          f"{engine_version}; nothing installed",
                          hint=f"use a release of {info.name} made for tuneforge {engine_version}")


def _pip(args: list[str], what: str) -> str:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "")
        raise PluginError(f"pip could not {what}: {last}", hint="run `" + " ".join(cmd[1:]) + "` to see pip's output")
    return proc.stdout


def build_wheel(spec: str, wheel_dir: Path, pip_options: list[str]) -> Path:
    """``spec`` as one wheel file in ``wheel_dir`` (a wheel path is used as it is)."""
    path = Path(spec)
    if path.suffix == ".whl":
        if not path.is_file():
            raise UsageError(f"wheel {spec} not found")
        return path
    if path.exists() and path.is_dir() and not ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file()):
        raise UsageError(f"{spec} is not a Python project (no pyproject.toml or setup.py)")
    _pip(["wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheel_dir), *pip_options,
          str(path.resolve()) if path.exists() else spec], f"build {spec}")
    wheels = sorted(wheel_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise PluginError(f"building {spec} gave {len(wheels)} wheels, expected 1")
    return wheels[0]


def install_plugin(spec: str, *, pip_options: list[str] | None = None,
                   install_options: list[str] | None = None,
                   engine_version: str = __version__) -> WheelInfo:
    """Build ``spec``, check it (see module doc), install it; return what was installed.

    ``pip_options`` go to both ``pip wheel`` and ``pip install`` (``--no-index``,
    ``--no-build-isolation``, ``--find-links DIR``); ``install_options`` only to
    ``pip install`` (``--no-deps``, ``--force-reinstall``).
    """
    pip_options = list(pip_options or [])
    build_opts = [o for o in pip_options if o != "--no-build-isolation"] if spec.endswith(".whl") else pip_options
    with tempfile.TemporaryDirectory(prefix="tuneforge-plugin-") as tmp:
        wheel = build_wheel(spec, Path(tmp), build_opts)
        info = read_wheel(wheel)
        check_engine_version(info, engine_version)
        opts = [o for o in pip_options if o != "--no-build-isolation"]
        _pip(["install", "--quiet", *opts, *(install_options or []), str(wheel)], f"install {info.name}")
    info.path = spec
    from importlib import invalidate_caches

    invalidate_caches()
    return info


def find_distribution(name: str) -> metadata.Distribution:
    """The installed distribution named ``name``, or the one providing plugin (entry point) ``name``."""
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name and ep.dist is not None:
            return ep.dist
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise PluginError(f"no installed plugin or package named {name!r}",
                          hint="run `tuneforge plugins` to see what is installed") from None
    if not any(ep.group == ENTRY_POINT_GROUP for ep in dist.entry_points):
        raise PluginError(f"{name} is installed but is not a tuneforge plugin; not uninstalling it")
    return dist


def uninstall_plugin(name: str, *, pip_options: list[str] | None = None) -> tuple[str, str, list[str]]:
    """Uninstall the plugin (entry point name or distribution name); returns (dist, version, plugins)."""
    dist = find_distribution(name)
    dist_name, version = dist.metadata["Name"], dist.version
    if _normalise(dist_name) == ENGINE:
        raise PluginError(f"{name!r} is built into tuneforge and cannot be uninstalled",
                          hint="turn it off with TUNEFORGE_PLUGINS (list the plugins you want)")
    plugins = sorted(ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP)
    _pip(["uninstall", "--yes", *(pip_options or []), dist_name], f"uninstall {dist_name}")
    from importlib import invalidate_caches

    invalidate_caches()
    return dist_name, version, plugins
