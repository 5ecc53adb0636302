"""Hardening: bad input is one line and exit 2 (nothing written), run names stay inside
--output-dir, killed exports leave nothing, bundles can be signed and unlisted files are refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _bundle_helpers import make_run
from click.testing import CliRunner

from tuneforge.cli import cli
from tuneforge.errors import BundleError, ConfigError, UsageError
from tuneforge.export import bundle as bundle_mod
from tuneforge.export import export_run
from tuneforge.export.signing import SIGNATURE, generate_keypair, sign_bundle
from tuneforge.runtime import Predictor


def _one_error_line(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tiny_encoder_dir, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("hard-runs"), tiny_encoder_dir, "classification", n_rows=24)


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory):
    return export_run(run_dir, out_dir=tmp_path_factory.mktemp("hard-exports"), variants=["fp32"], measure=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    good = generate_keypair(root / "good")
    other = generate_keypair(root / "other")
    return {"private": good[0], "public": good[1], "other_private": other[0], "other_public": other[1]}


# -- defect 6: a run name is a name ------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../evil", "ABSOLUTE", "a/b", "..", "x\\..\\y", ".hidden", "ok/../.."])
def test_run_name_with_a_path_is_refused_and_nothing_is_written(tmp_path, name, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    if name == "ABSOLUTE":
        name = str(tmp_path / "evil-abs")
    result = CliRunner().invoke(cli, ["train", "--task", "support-intents", "--output-dir", "runs",
                                      "--run-name", name, "--no-progress"])
    assert result.exit_code == 2
    assert "run_name must be a plain folder name" in _one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and list(work.iterdir()) == []


def test_plain_run_names_are_accepted():
    from tuneforge.config import TrainConfig

    assert TrainConfig(run_name="intent-v2_2026.12").run_name == "intent-v2_2026.12"


# -- defect 10: every bad setting is one line, exit 2, no run folder --------------------------------
@pytest.mark.parametrize("args, words", [
    (["--epochs", "inf"], "epochs must be a number (finite)"),
    (["--epochs", "nan"], "epochs must be a number (finite)"),
    (["--set", "seed=[1]"], "seed must be an integer, got [1]"),
    (["--set", "learning_rate=abc"], "learning_rate must be a number, got 'abc'"),
    (["--set", "batch_size=2.5"], "batch_size must be an integer"),
    (["--set", "class_weights=3"], "class_weights must be true/false"),
    (["--set", "lora_targets=[1, 2]"], "lora_targets must be a list of strings"),
    (["--set", 'columns={"text": 3}'], "columns must be a table"),
    (["--set", "max_length=-5"], "max_length must be in 8..8192"),
    (["--set", "epochs=1e9"], "epochs must be <= 10000"),
])
def test_bad_settings_are_one_line_exit_2_and_leave_no_run_folder(tmp_path, args, words):
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["train", "--task", "support-intents", "--output-dir", str(out),
                                      "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert words in _one_error_line(result)
    assert not out.exists()


def test_config_types_are_checked_in_the_dataclass():
    from tuneforge.config import TrainConfig

    with pytest.raises(ConfigError, match="seed must be an integer"):
        TrainConfig(seed="1")
    assert TrainConfig(epochs=2).epochs == 2.0 and isinstance(TrainConfig(epochs=2).epochs, float)


def test_serve_port_out_of_range_is_one_line():
    result = CliRunner().invoke(cli, ["serve", "anything", "--port", "99999"])
    assert result.exit_code == 2
    assert "--port" in _one_error_line(result) and "99999" in result.output


def test_click_usage_errors_are_one_line_too(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--mode", "sideways"])
    assert result.exit_code == 2 and "Invalid value for '--mode'" in _one_error_line(result)


def test_predict_empty_text_is_exit_2_like_http_422(tmp_path):
    result = CliRunner().invoke(cli, ["predict", str(tmp_path), "--text", ""])
    assert result.exit_code == 2 and "--text #1 is empty" in _one_error_line(result)
    result = CliRunner().invoke(cli, ["predict", str(tmp_path), "--text", "ok", "--text", "   "])
    assert result.exit_code == 2 and "--text #2 is empty" in _one_error_line(result)


def test_predict_invalid_utf8_argument_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tuneforge", "predict", str(tmp_path), "--text", b"caf\xe9"],
                          capture_output=True, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: --text #1 is not valid UTF-8")


def test_predict_invalid_utf8_on_stdin_is_one_line(bundle):
    result = CliRunner().invoke(cli, ["predict", str(bundle), "--file", "-"], input=b"hello\n\xff\xfe bad\n")
    assert result.exit_code == 2
    assert "stdin line 2 is not valid UTF-8" in result.output.strip().splitlines()[-1]
    assert result.output.strip().splitlines()[-1].startswith("error: ")


def test_invalid_utf8_text_is_refused_by_the_runtime(bundle):
    p = Predictor.load(bundle)
    with pytest.raises(UsageError, match=r"texts\[1\] is not valid UTF-8"):
        p.predict(["fine", "bad \udce9"])


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["tokenizer"].update(max_length=-5), "tokenizer.max_length must be an integer"),
    (lambda m: m["tokenizer"].update(max_length=10**12), "tokenizer.max_length must be an integer"),
    (lambda m: m["tokenizer"].update(max_length="128"), "tokenizer.max_length must be an integer"),
    (lambda m: m["tokenizer"].update(pad_id=-1), "tokenizer.pad_id"),
    (lambda m: m.update(labels=[1, 2]), "labels[0] must be a string"),
    (lambda m: m.update(labels="card"), "labels and inputs must be lists"),
    (lambda m: m["output"].update(shape="N,3"), "output must have a name and a shape"),
    (lambda m: m.update(parity=[]), "parity must be an object"),
    (lambda m: m.update(tokenizer=[]), "tokenizer must be an object"),
    (lambda m: m.update(schema_version="1"), "schema_version must be a positive integer"),
])
def test_absurd_manifest_values_are_one_line_naming_file_and_field(bundle, tmp_path, edit, words):
    copy = shutil.copytree(bundle, tmp_path / "v1")
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as err:
        Predictor.load(copy)
    assert str(copy / "manifest.json") in err.value.message and words in err.value.message
    result = CliRunner().invoke(cli, ["predict", str(copy), "--text", "hi"])
    assert result.exit_code == 1 and words in _one_error_line(result)


# -- defect 7: killed exports leave nothing --------------------------------------------------------
SLOW_EXPORT = """
import sys, time
from pathlib import Path
from tuneforge.export import export_run, onnx_export
real = onnx_export.export_onnx
def slow(*args, **kwargs):
    result = real(*args, **kwargs)
    Path(sys.argv[3]).write_text("ready")
    time.sleep(120)
    return result
onnx_export.export_onnx = slow
export_run(sys.argv[1], out_dir=sys.argv[2], variants=["fp32"], measure=False)
"""


def test_sigterm_during_export_leaves_nothing(run_dir, tmp_path):
    out, ready = tmp_path / "exports", tmp_path / "ready"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, str(run_dir), str(out), str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert ready.exists(), proc.stderr.read().decode() if proc.poll() is not None else "export never got going"
        tmp = list(out.glob("*/.tmp-*"))
        assert tmp and (tmp[0] / bundle_mod.OWNER).is_file()   # building, with its owner record
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(out.iterdir()) == []   # no temp folder, no name folder


def _fake_temp(out: Path, name: str, pid: int, host: str | None = None) -> Path:
    tmp = out / name / f".tmp-v1-{pid}"
    tmp.mkdir(parents=True)
    (tmp / "model.onnx").write_bytes(b"\0" * 1024)
    (tmp / bundle_mod.OWNER).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))
    return tmp


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_export_removes_stale_temp_folders_of_dead_exports_only(tmp_path):
    out = tmp_path / "exports"
    dead = _fake_temp(out, "old-model", _dead_pid())
    live = _fake_temp(out, "busy-model", os.getpid())
    elsewhere = _fake_temp(out, "remote-model", _dead_pid(), host="some-other-host")
    no_owner = out / "orphan" / ".tmp-v1-abcd"
    no_owner.mkdir(parents=True)
    old = time.time() - bundle_mod.STALE_WITHOUT_OWNER_S - 60
    os.utime(no_owner, (old, old))
    with bundle_mod.AtomicBundle(out, "new-model") as target:
        assert sorted(target.removed_stale) == sorted([dead, no_owner])
    assert not dead.exists() and not (out / "old-model").exists() and not no_owner.exists()
    assert live.is_dir() and elsewhere.is_dir()   # a running export, and another host's folder
    assert not (out / "new-model").exists()       # the uncommitted writer cleaned up after itself


def test_export_run_sweeps_stale_temp_folders(run_dir, tmp_path):
    out = tmp_path / "exports"
    dead = _fake_temp(out, "tiny-classification", _dead_pid())
    final = export_run(run_dir, out_dir=out, variants=["fp32"], measure=False)
    assert not dead.exists() and final.is_dir()
    assert not (final / bundle_mod.OWNER).exists()   # the owner record never ships
    assert bundle_mod.OWNER not in json.loads((final / "manifest.json").read_text())["files"]


# -- defect 13: signed bundles, unlisted files ------------------------------------------------------
def test_keygen_writes_a_private_key_only_the_owner_can_read(tmp_path):
    result = CliRunner().invoke(cli, ["keygen", str(tmp_path / "k" / "release")])
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "k" / "release.pem", tmp_path / "k" / "release.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    again = CliRunner().invoke(cli, ["keygen", str(tmp_path / "k" / "release")])
    assert again.exit_code == 2 and "already exists" in _one_error_line(again)


@pytest.fixture(scope="module")
def signed(run_dir, keys, tmp_path_factory):
    return export_run(run_dir, out_dir=tmp_path_factory.mktemp("signed"), variants=["fp32"], measure=False,
                      sign=keys["private"])


def test_signed_bundle_loads_with_the_right_key(signed, keys):
    assert (signed / SIGNATURE).is_file()
    assert SIGNATURE not in json.loads((signed / "manifest.json").read_text())["files"]
    assert Predictor.load(signed, trust=keys["public"]).predict(["where is my card"])
    assert Predictor.load(signed, trust=keys["public"].read_bytes()).variant == "fp32"
    assert Predictor.load(signed, trust=[keys["other_public"], keys["public"]])  # key rotation: any of them
    assert Predictor.load(signed)   # a signed bundle loads without a key too (hashes still checked)
    result = CliRunner().invoke(cli, ["predict", str(signed), "--trust", str(keys["public"]), "--text", "hi"])
    assert result.exit_code == 0, result.output


def test_tampered_file_with_rehashed_manifest_is_refused_with_a_key(signed, keys, tmp_path):
    copy = shutil.copytree(signed, tmp_path / "v1")
    (copy / "labels.json").write_text(json.dumps({"labels": ["evil", "evil", "evil"]}))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = bundle_mod.file_table(copy)   # the attacker updates the hash
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert Predictor.load(copy)    # hashes alone cannot tell
    with pytest.raises(BundleError, match="signature does not match the trusted key"):
        Predictor.load(copy, trust=keys["public"])
    result = CliRunner().invoke(cli, ["predict", str(copy), "--trust", str(keys["public"]), "--text", "hi"])
    assert result.exit_code == 1 and "signature does not match" in _one_error_line(result)


def test_unsigned_bundle_with_a_key_is_refused(bundle, keys):
    with pytest.raises(BundleError, match="is not signed"):
        Predictor.load(bundle, trust=keys["public"])


def test_wrong_key_is_refused(signed, keys):
    with pytest.raises(BundleError, match="signature does not match"):
        Predictor.load(signed, trust=keys["other_public"])


def test_resigned_by_another_key_is_refused(signed, keys, tmp_path):
    copy = shutil.copytree(signed, tmp_path / "v1")
    sign_bundle(copy, keys["other_private"])
    with pytest.raises(BundleError, match="signature does not match"):
        Predictor.load(copy, trust=keys["public"])


def test_bad_keys_are_one_line(signed, keys, tmp_path):
    with pytest.raises(UsageError, match="is a private key; trust takes the public key"):
        Predictor.load(signed, trust=keys["private"])
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(UsageError, match="is not a PEM public key"):
        Predictor.load(signed, trust=junk)
    with pytest.raises(UsageError, match="is not an unencrypted PEM private key"):
        export_run("does-not-matter", sign=junk)


def test_sign_command_signs_an_existing_bundle(bundle, keys, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "v1")
    result = CliRunner().invoke(cli, ["sign", str(copy), "--key", str(keys["private"])])
    assert result.exit_code == 0, result.output
    assert Predictor.load(copy, trust=keys["public"])


@pytest.mark.parametrize("extra", ["extra.onnx", "sub/dir/notes.txt", ".hidden"])
def test_unlisted_file_is_refused_even_without_a_key(bundle, tmp_path, extra):
    copy = shutil.copytree(bundle, tmp_path / "v1")
    (copy / extra).parent.mkdir(parents=True, exist_ok=True)
    (copy / extra).write_text("surprise")
    with pytest.raises(BundleError) as err:
        Predictor.load(copy)
    assert f"{extra} is not listed in manifest.json" in err.value.message


def test_runtime_stays_free_of_torch_and_cryptography_without_a_key(bundle):
    code = ("import sys\nimport tuneforge.runtime as rt\n"
            f"rt.Predictor.load({str(bundle)!r}).predict(['hi'])\n"
            "print(sorted(m for m in ('torch', 'cryptography') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_trust_refuses_an_unsigned_bundle_and_serves_a_signed_one(signed, bundle, keys):
    from fastapi.testclient import TestClient

    from tuneforge.serve import build_server

    with TestClient(build_server(str(signed), trust=str(keys["public"]))) as client:
        assert client.post("/v1/predict", json={"text": "where is my card"}).status_code == 200
    with pytest.raises(BundleError):
        build_server(str(bundle), trust=str(keys["public"]))
    result = CliRunner().invoke(cli, ["serve", str(bundle), "--trust", str(keys["public"]), "--port", "8765"])
    assert result.exit_code != 0 and "\nerror: bundle " in result.output and "Traceback" not in result.output
