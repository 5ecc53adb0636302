"""The CLI as users meet it: help with examples, one-line errors, exit codes, nothing half-written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from tuneforge.cli import cli

COMMANDS = ["train", "distill", "eval", "export", "predict", "serve", "plugins", "apps", "new", "new app"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = invoke(*command.split(), "--help")
    assert result.exit_code == 0
    assert "Example" in result.output, result.output
    assert "tuneforge " in result.output


def test_help_does_not_import_torch():
    code = "import sys; from tuneforge.cli import cli; sys.exit(int('torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


BAD_FILES = [
    ("missing_column.csv", "words,label\nhello,a\n", 1, "missing column 'text'"),
    ("empty_text.csv", "text,label\nhello,card_arrival\n  ,card_arrival\nbye,card_arrival\n", 3, "empty text"),
    ("unknown_label.csv", "text,label\nhello,card_arrival\nbye,not_an_intent\n", 3, "unknown label"),
    ("bad.jsonl", '{"text": "hi", "label": "card_arrival"}\n{"text": "oops",\n', 2, "JSON"),
    ("latin1.csv", "text,label\nhello,card_arrival\ncaf\xe9,card_arrival\n", 3, "encoding"),
    ("dup_ids.csv", "id,text,label\n1,a,card_arrival\n1,b,card_arrival\n", 3, "duplicate id"),
]


@pytest.mark.parametrize("name,content,line,words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_training_file_gives_one_line_naming_file_and_line(tmp_path, name, content, line, words):
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1"))
    runs = tmp_path / "runs"
    args = ["train", "--task", "support-intents", "--data", str(path), "--output-dir", str(runs),
            "--label-column", "label"]
    if name.startswith("dup"):
        args += ["--set", 'columns={"id": "id"}']
    proc = subprocess.run([sys.executable, "-m", "tuneforge", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}:{line}:"), lines[0]
    assert words.lower() in lines[0].lower()
    assert not runs.exists()  # nothing written


def test_bad_config_file_names_the_file_and_suggests_the_fix(tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text('[train]\ntask = "support-intents"\nepoch = 3\n')
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg)])
    assert result.exit_code == 2
    assert f"{cfg}: unknown setting 'epoch'" in result.output and "did you mean 'epochs'" in result.output


def test_invalid_toml_names_the_line(tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text('[train]\nepochs = = 3\n')
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg)])
    assert result.exit_code == 2 and "invalid TOML" in result.output and "line 2" in result.output


def test_debug_shows_the_traceback():
    proc = subprocess.run([sys.executable, "-m", "tuneforge", "--debug", "train", "--task", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "PluginError" in proc.stderr
    plain = subprocess.run([sys.executable, "-m", "tuneforge", "train", "--task", "nope"],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("error: unknown task 'nope'")


def test_predict_without_input_says_what_to_pass(tmp_path):
    result = CliRunner().invoke(cli, ["predict", str(tmp_path)])
    assert result.exit_code == 2 and "pass --text TEXT or --file FILE" in result.output


def test_set_requires_key_value():
    result = CliRunner().invoke(cli, ["train", "--task", "support-intents", "--set", "oops"])
    assert result.exit_code == 2 and "--set expects KEY=VALUE" in result.output


def test_toml_config_with_cli_overrides_is_resolved_and_saved(tmp_path, tiny_encoder_dir):
    import json

    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{w} item {i},{w}\n" for i in range(12) for w in ("yes", "no")))
    cfg = tmp_path / "train.toml"
    cfg.write_text(f'[train]\ntask = "text-classification"\ndata = "{data}"\nepochs = 1\nseed = 3\n'
                   f'base_model = "{tiny_encoder_dir}"\n[train.columns]\ntext = "text"\n')
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--seed", "9", "--set", "batch_size=4",
                                      "--output-dir", str(tmp_path / "runs"), "--run-name", "r", "--no-progress"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert (saved["epochs"], saved["seed"], saved["batch_size"]) == (1, 9, 4)  # file < flags < --set
    assert saved["columns"] == {"text": "text"} and saved["task"] == "text-classification"
    assert json.loads((tmp_path / "runs" / "r" / "labels.json").read_text())["labels"] == ["no", "yes"]


def test_serve_an_app_by_name_passes_the_same_options(monkeypatch):
    import tuneforge.serve as serve

    seen = {}
    monkeypatch.setattr(serve, "build_server", lambda target, **kw: seen.update(target=target, **kw) or
                        type("App", (), {"state": type("S", (), {"loaded": type("L", (), {"name": target,
                                                                                        "info": {}})})}))
    monkeypatch.setattr(serve, "run_server", lambda app, host, port: seen.update(host=host, port=port))
    result = CliRunner().invoke(cli, ["serve", "support-bot", "--port", "8123", "--token", "t0k",
                                      "--app-path", "bots/x"])
    assert result.exit_code == 0, result.output
    assert (seen["target"], seen["app_path"], seen["token"], seen["port"], seen["host"]) == \
        ("support-bot", "bots/x", "t0k", 8123, "127.0.0.1")


@pytest.mark.parametrize("args,env,words", [
    (["--token", ""], {}, "the token is empty"),
    ([], {"TUNEFORGE_TOKEN": "  "}, "the token is empty"),
    (["--host", "0.0.0.0"], {}, "refusing to serve 0.0.0.0 without a token"),
    (["--port", "99999"], {}, "99999 is not in the range"),
])
def test_serve_refuses_unsafe_or_bad_server_options(args, env, words, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(cli, ["serve", "support-bot", *args])
    assert result.exit_code == 2 and words in result.output, result.output


def test_serve_reads_the_token_from_a_file(tmp_path, monkeypatch):
    from tuneforge.cli.common import resolve_token

    (tmp_path / "t").write_text("s3cret\n")
    assert resolve_token(None, str(tmp_path / "t"), "0.0.0.0", False) == "s3cret"
    (tmp_path / "e").write_text("")
    with pytest.raises(Exception, match="is empty"):
        resolve_token(None, str(tmp_path / "e"), "127.0.0.1", False)
    assert resolve_token(None, None, "0.0.0.0", True) is None      # said explicitly


def test_serve_unknown_name_lists_bundles_and_apps():
    result = CliRunner().invoke(cli, ["serve", "no-such-thing"])
    assert result.exit_code == 2
    assert "no-such-thing is neither a bundle folder nor an app" in result.output
    assert "support-bot" in result.output and "recommender" in result.output
