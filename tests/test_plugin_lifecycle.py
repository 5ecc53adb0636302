"""A third-party plugin's whole life: scaffold -> pip install (offline) -> listed -> its contract tests
pass -> train + export its task -> a prediction served by `tuneforge serve` -> uninstall -> gone.

Everything runs in a throw-away virtual environment layered over this one (so the real
environment is never touched), through the `tuneforge` CLI as a user would run it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

NAME, MODULE, TASK = "acme-tickets", "acme_tickets", "acme-tickets"


def make_overlay_venv(root: Path) -> Path:
    """A venv whose site-packages also sees this environment's (tuneforge, torch, pip, ...).

    Packages pip installs with its python land in the new venv only; ``pip uninstall``
    works there (it is the running prefix).  Returns the venv's python.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    # an `import` line in a .pth runs at start-up: addsitedir also runs the parent's .pth files
    # (the editable install of tuneforge lives in one)
    (Path(site) / "_tuneforge_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


class Env:
    def __init__(self, python: Path, cwd: Path):
        self.python, self.cwd = python, cwd
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PIP_NO_INPUT": "1",
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        self.env.pop("TUNEFORGE_PLUGINS", None)
        self.env.pop("PYTEST_ADDOPTS", None)

    def run(self, *args, ok=True, timeout=300, cwd=None) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.python), *args], capture_output=True, text=True, env=self.env,
                              cwd=cwd or self.cwd, timeout=timeout)
        if ok and proc.returncode:
            raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def tuneforge(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.run("-m", "tuneforge", *args, **kw)

    def site_contents(self) -> list[str]:
        site = self.run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
        return sorted(p.name for p in Path(site).iterdir())

    def plugins(self) -> dict:
        return {p["name"]: p for p in json.loads(self.tuneforge("plugins", "--json").stdout)["plugins"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"server did not answer {url} within {timeout} s")


@pytest.fixture
def overlay(tmp_path) -> Env:
    return Env(make_overlay_venv(tmp_path / "venv"), tmp_path)


def install_scaffolded(env: Env) -> Path:
    out = env.tuneforge("new", "plugin", NAME, "--dir", str(env.cwd)).stdout
    assert f"plugin {MODULE} with task {TASK}" in out
    pkg = env.cwd / NAME
    assert MODULE not in env.plugins()
    out = env.tuneforge("plugins", "install", str(pkg), "--no-index", "--no-build-isolation").stdout
    assert f"installed {NAME} 0.1.0" in out and f"plugin {MODULE} loaded" in out, out
    return pkg


def test_plugin_lifecycle_scaffold_install_test_train_serve_uninstall(overlay, tiny_encoder_dir):
    env = overlay
    pkg = install_scaffolded(env)

    # listed, with its version and task, loaded through its entry point
    listed = env.plugins()[MODULE]
    assert listed["version"] == "0.1.0" and listed["tasks"] == [TASK] and listed["error"] is None
    assert listed["module"] == MODULE

    # its generated tests (tuneforge's contract kit + its own) pass against the installed plugin
    tests = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(pkg), str(pkg / "tests"),
                    cwd=pkg)
    assert " passed" in tests.stdout and "failed" not in tests.stdout, tests.stdout

    # train and export its task on a tiny model, as a user would
    env.tuneforge("train", "--task", TASK, "--base-model", tiny_encoder_dir, "--epochs", "2", "--output-dir",
                  "runs", "--run-name", "acme", "--no-progress", "--set", "checkpoint=false")
    env.tuneforge("export", "runs/acme", "--out-dir", "exports", "--variants", "fp32", "--no-measure")
    bundle = env.cwd / "exports" / TASK / "v1"
    assert (bundle / "manifest.json").is_file()

    # a prediction served over HTTP by `tuneforge serve`, with the plugin's postprocess applied; then
    # the plugin's own app, served by name like the built-in ones
    answers = {}
    for name, args, path, body in (("bundle", [str(bundle)], "/v1/predict", {"texts": ["I was charged twice"]}),
                                   ("app", [TASK, "--app-path", str(bundle)], "/v1/route", {"text": "I was charged twice"})):
        port = free_port()
        server = subprocess.Popen([str(env.python), "-m", "tuneforge", "serve", *args, "--port", str(port)],
                                  env=env.env, cwd=env.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        try:
            wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
            answers[name] = post_json(f"http://127.0.0.1:{port}{path}", body)
        finally:
            server.terminate()
            server.wait(timeout=30)
    [prediction] = answers["bundle"]["predictions"]
    assert prediction["team"] in {"billing", "technical", "account"} and 0 <= prediction["confidence"] <= 1
    assert answers["bundle"]["model"].startswith(TASK)
    assert answers["app"] == prediction

    # uninstall: gone from the listing, its task unknown, nothing left in the venv
    out = env.tuneforge("plugins", "uninstall", MODULE).stdout
    assert f"uninstalled {NAME} 0.1.0" in out
    assert MODULE not in env.plugins()
    gone = env.tuneforge("train", "--task", TASK, ok=False)
    assert gone.returncode != 0 and f"unknown task '{TASK}'" in gone.stderr
    assert env.site_contents() == ["_tuneforge_parent.pth"]


def test_install_refuses_a_plugin_made_for_another_tuneforge_and_installs_nothing(overlay):
    env = overlay
    env.tuneforge("new", "plugin", NAME, "--dir", str(env.cwd))
    pyproject = env.cwd / NAME / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"tuneforge>=0.1.0,<0.2"', '"tuneforge>=9.0"'))
    proc = env.tuneforge("plugins", "install", str(env.cwd / NAME), "--no-index", "--no-build-isolation", ok=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {NAME} 0.1.0 requires tuneforge>=9.0, but this is tuneforge 0.1.0; nothing installed "
                     f"(hint: use a release of {NAME} made for tuneforge 0.1.0)"], proc.stderr
    assert MODULE not in env.plugins()
    assert env.site_contents() == ["_tuneforge_parent.pth"]


def test_fast_install_from_a_wheel_list_uninstall(overlay):
    """The lifecycle without training or serving (the quick variant), installing a wheel file."""
    env = overlay
    env.tuneforge("new", "plugin", NAME, "--dir", str(env.cwd))
    env.run("-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", "--wheel-dir",
            "wheels", str(env.cwd / NAME))
    [wheel] = (env.cwd / "wheels").glob("*.whl")
    out = env.tuneforge("plugins", "install", str(wheel), "--no-index").stdout
    assert f"installed {NAME} 0.1.0" in out and f"plugin {MODULE} loaded" in out, out
    assert env.plugins()[MODULE]["tasks"] == [TASK]
    again = env.tuneforge("plugins", "uninstall", NAME)  # by distribution name this time
    assert f"uninstalled {NAME} 0.1.0 (plugins: {MODULE})" in again.stdout
    assert MODULE not in env.plugins()
    missing = env.tuneforge("plugins", "uninstall", MODULE, ok=False)
    assert missing.returncode == 1 and f"no installed plugin or package named '{MODULE}'" in missing.stderr
