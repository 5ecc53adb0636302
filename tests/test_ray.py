"""``--engine ray``: the same apps on Ray Serve replicas, batch scoring on Ray Data.

One local Ray (2 CPUs, no dashboard) is started once for this module.  The served app is checked
with the assertions of tests/test_apps_served.py (auth, limits, errors, health, metrics, OpenAPI)
over real HTTP through Ray's proxy; then one replica is killed with SIGKILL under load.  Batch
scoring is killed with SIGKILL halfway and resumed.  Without Ray installed only the import and
option tests run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _bundle_helpers import make_run

TOKEN = "r4y-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY_LIMIT = 2000


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory, tiny_encoder_dir):
    from tuneforge.export import export_run

    root = tmp_path_factory.mktemp("ray-bundle")
    run = make_run(root / "runs", tiny_encoder_dir, "classification")
    return Path(export_run(run, out_dir=root / "exports", variants=["fp32"], measure=False))


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for this module (2 CPUs, no dashboard); its GCS address, for child processes."""
    ray = pytest.importorskip("ray")
    from tuneforge.ray_serve import init_ray

    before = os.environ.get("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH")
    started = init_ray(num_cpus=2)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        from ray import serve

        serve.shutdown()
        if started:
            ray.shutdown()
        if before is None:
            os.environ.pop("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", None)


def _cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "tuneforge", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


# -- without Ray ----------------------------------------------------------------------------------
def test_cli_plain_serve_and_plain_predict_never_import_ray(tiny_bundle):
    code = f"""
import sys
from click.testing import CliRunner
import tuneforge.cli, tuneforge.serve, tuneforge.cli.serve, tuneforge.cli.predict
from tuneforge.cli import cli
from tuneforge.serve import build_server
build_server({str(tiny_bundle)!r})
result = CliRunner().invoke(cli, ["predict", {str(tiny_bundle)!r}, "--text", "lost my card"])
assert result.exit_code == 0 and '"label"' in result.output, result.output
assert "ray" not in sys.modules, "ray was imported"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_engine_ray_without_ray_installed_is_one_line_naming_the_extra(tiny_bundle, tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from tuneforge.cli import main\n"
            "sys.argv = ['tuneforge'] + sys.argv[1:]\n"
            "main()")
    for args in (["serve", str(tiny_bundle), "--engine", "ray"],
                 ["predict", str(tiny_bundle), "--file", str(tiny_bundle / "manifest.json"), "--engine", "ray",
                  "--out", str(tmp_path / "out")]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert out.returncode == 2, out.stderr[-2000:]
        lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "pip install 'tuneforge[ray]'" in lines[0], out.stderr
        assert "Traceback" not in out.stderr


def test_ray_options_are_validated_and_need_engine_ray(tiny_bundle):
    from tuneforge.errors import UsageError
    from tuneforge.ray_serve import RayServeConfig, parse_autoscale

    assert parse_autoscale("1:4") == (1, 4) and parse_autoscale(None) is None
    for bad in ("4:1", "x:2", "3", "0:0"):
        with pytest.raises(UsageError):
            parse_autoscale(bad)
    two = RayServeConfig(replicas=2).deployment_options()
    assert two["num_replicas"] == 2 and two["ray_actor_options"]["num_cpus"] * 2 <= 1.0  # fits 2 cores + Serve
    auto = RayServeConfig(autoscale=(1, 3)).deployment_options()
    assert "num_replicas" not in auto and auto["autoscaling_config"]["max_replicas"] == 3
    out = _cli("serve", str(tiny_bundle), "--replicas", "2")
    assert out.returncode == 2 and "need --engine ray" in out.stderr
    out = _cli("serve", str(tiny_bundle), "--engine", "ray", "--host", "0.0.0.0")
    assert out.returncode == 2 and "refusing to serve 0.0.0.0 without a token" in out.stderr
    out = _cli("predict", str(tiny_bundle), "--text", "hi", "--out", "somewhere")
    assert out.returncode == 2 and "need --engine ray" in out.stderr


# -- Ray Serve ------------------------------------------------------------------------------------
@pytest.fixture
def bot_on_ray(local_ray, tiny_bot, tmp_path):
    """The tiny support bot (a private copy: chats write transcripts) on 2 Ray Serve replicas."""
    from tuneforge.plugins.support_bot.loadtest import free_port
    from tuneforge.ray_serve import RayServeConfig, RayServer, replica_pids
    from tuneforge.serve import ServerLimits

    project = tmp_path / "bot-project"
    shutil.copytree(tiny_bot.parent, project, ignore=shutil.ignore_patterns("runs", "bot.sqlite*"))
    bot = project / "bot"
    kwargs = dict(app_path=str(bot), token=TOKEN, limits=ServerLimits(max_body_bytes=BODY_LIMIT))
    server = RayServer("support-bot", kwargs, RayServeConfig(replicas=2, port=free_port(), health_check_period_s=1))
    server.start()
    deadline = time.monotonic() + 60
    while len(replica_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        yield server, bot
    finally:
        server.stop()


def test_support_bot_on_two_ray_replicas_is_the_plain_server_and_survives_a_killed_replica(bot_on_ray):
    import httpx

    from tuneforge.ray_serve import replica_pids

    server, bot = bot_on_ray
    route, body = "/v1/chat", {"message": "where is my new card"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["app"] == "support-bot"
        refused = client.post(route, json=body)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
        answered = client.post(route, json=body, headers=AUTH)
        assert answered.status_code == 200 and answered.json()["turn"], answered.text
        assert client.get("/metrics").status_code == 401
        metrics = client.get("/metrics", headers=AUTH)          # one replica's registry
        assert metrics.status_code == 200 and "tuneforge_http_requests_total" in metrics.text
        big = json.dumps({**body, "message": "a" * (BODY_LIMIT + 100)}).encode()
        for content in (big, iter([big[:1000], big[1000:]])):
            r = client.post(route, content=content, headers={**AUTH, "Content-Type": "application/json"})
            assert r.status_code == 413 and r.json()["error"]["type"] == "too_large", r.text
        assert client.post(route, content=big, headers={"Content-Type": "application/json"}).status_code == 401
        r = client.post(route, content=b'{"oops": ', headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json"
        r = client.post(route, content=b"text=hello", headers={**AUTH, "Content-Type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["type"] == "unsupported_media_type"
        schema = client.get("/openapi.json", headers=AUTH).json()
        assert schema["paths"][route]["post"]["responses"]["401"]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/ErrorBody"}

    # kill -9 one replica while 6 clients chat: every request is answered or a retryable 503
    pids = replica_pids()
    assert len(pids) == 2
    results, lock, stop = [], threading.Lock(), time.monotonic() + 6

    def chat():
        with httpx.Client(base_url=server.url, timeout=30, headers=AUTH) as c:
            while time.monotonic() < stop:
                try:
                    r = c.post(route, json={"message": "I lost my card"})
                    item = (r.status_code, r.json() if r.headers.get("content-type", "").startswith(
                        "application/json") else r.text, r.headers.get("retry-after"))
                except httpx.TransportError as e:
                    item = ("transport", type(e).__name__, None)
                with lock:
                    results.append(item)

    threads = [threading.Thread(target=chat) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    os.kill(pids[0], signal.SIGKILL)
    for t in threads:
        t.join()
    answered = [body for status, body, _ in results if status == 200]
    failed = [(status, body, retry) for status, body, retry in results if status != 200]
    assert len(answered) > 20
    for status, body, retry in failed:
        assert status == 503 and body["error"]["type"] == "unavailable" and retry == "1", (status, body)
    with sqlite3.connect(bot / "bot.sqlite") as db:
        stored = {ref for (ref,) in db.execute("SELECT ref FROM turns")}
    assert {a["turn"] for a in answered} <= stored           # no answered turn missing from the store
    assert pids[0] not in replica_pids()


# -- Ray Data -------------------------------------------------------------------------------------
def _texts(path: Path, n: int) -> list[str]:
    words = "card lost top up transfer failed refund fee account pin atm cash exchange declined".split()
    texts = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(3 + i % 9)) + f" {i}" for i in range(n)]
    with open(path, "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"q{i}", "text": t}) + "\n")
    return texts


def test_predict_on_ray_data_resumes_after_sigkill_without_scoring_a_text_twice(local_ray, tiny_bundle, tmp_path):
    from tuneforge.ray_data import read_output

    n, shard = 6000, 200
    texts = _texts(tmp_path / "in.jsonl", n)
    out = tmp_path / "scored"
    cmd = [sys.executable, "-m", "tuneforge", "predict", str(tiny_bundle), "--file", str(tmp_path / "in.jsonl"),
           "--engine", "ray", "--address", local_ray, "--out", str(out), "--shard-rows", str(shard), "--actors", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 90
    while len(list(out.glob("part-*.jsonl"))) < 3 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("part-*.jsonl")}
    assert 3 <= len(before) < n // shard, f"killed too late or too early: {len(before)} parts"

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    report = json.loads(second.stdout)
    assert report["skipped_shards"] == len(before) and report["scored_shards"] == n // shard - len(before)
    assert report["torch_in_actors"] is False
    for name, stamp in before.items():                       # finished parts were kept, not rescored
        p = out / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp
    rows = list(read_output(out))
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(n)]     # none missing, none twice, in order
    assert [r["text"] for r in rows] == texts
    assert all(r["label"] in ("card", "payment", "account") for r in rows)
    assert not list(out.glob(".part-*"))                     # no half-written part left behind


def test_predict_on_ray_data_reads_csv_writes_parquet_with_row_numbers(local_ray, tiny_bundle, tmp_path):
    from tuneforge.ray_data import ScoreJob, read_output, score
    from tuneforge.runtime import Predictor

    texts = ["lost my card", "how do I top up", "refund, please", "where is my money"] * 5
    src = tmp_path / "in.csv"
    src.write_text("text\n" + "".join(f'"{t}"\n' for t in texts))
    job = ScoreJob(bundle=str(tiny_bundle), source=str(src), out_dir=str(tmp_path / "o"), format="parquet",
                   shard_rows=7, actors=1, cpus_per_actor=0.5)
    report = score(job)
    assert report.rows == 20 and report.shards == 3 and report.skipped_shards == 0
    rows = list(read_output(tmp_path / "o"))
    assert [r["id"] for r in rows] == [str(i) for i in range(20)]
    local = Predictor.load(tiny_bundle).predict(texts)
    assert [r["label"] for r in rows] == [p.label for p in local]
    again = score(ScoreJob(bundle=str(tiny_bundle), source=str(src), out_dir=str(tmp_path / "o"),
                           format="parquet", shard_rows=7, actors=1, cpus_per_actor=0.5))
    assert again.skipped_shards == 3 and again.scored_rows == 0


# -- the finance monitor's backfill on Ray Data ----------------------------------------------------
def test_finance_backfill_scores_on_ray_and_replays_into_the_monitor_state(local_ray, tiny_encoder_dir, tmp_path):
    """``tuneforge finance backfill``: the archive's texts scored by Ray actors, then replayed through
    the monitor -- the state holds every item with the probabilities a plain monitor run gives (same
    fp32 bundle), nothing scored outside Ray; a second run keeps every part and adds no item twice."""
    from test_finance_scenario import write_config

    from tuneforge.export import export_run
    from tuneforge.plugins.finance.backfill import backfill
    from tuneforge.plugins.finance.config import MonitorConfig
    from tuneforge.plugins.finance.monitor import Monitor
    from tuneforge.plugins.finance.sample import make_stream, write_jsonl

    run = make_run(tmp_path / "runs", tiny_encoder_dir, "classification", labels=["negative", "neutral", "positive"],
                   task="finance-sentiment", n_rows=24)
    bundle = export_run(run, out_dir=tmp_path / "exports", variants=["fp32"], measure=False)
    write_jsonl(make_stream(300), tmp_path / "archive.jsonl")

    def config(folder):
        folder.mkdir()
        path = write_config(folder, files=[])
        path.write_text(path.read_text().replace('scorer = "keywords"', f'bundle = "{bundle}"\nvariant = "fp32"'))
        return MonitorConfig.load(path)

    report = backfill(config(tmp_path / "ray"), tmp_path / "archive.jsonl", tmp_path / "scored", address=local_ray)
    assert report.items == 300 and report.scored_rows == 300 and report.fallback == 0 and report.looked_up == 300
    plain = config(tmp_path / "plain")
    plain.ingest.files = [str(tmp_path / "archive.jsonl")]

    with Monitor(MonitorConfig.load(tmp_path / "ray" / "monitor.toml"), sinks=[]) as mon:
        backfilled = {r[0]: r[1:] for r in mon.store.db.execute("SELECT id, p_neg, p_neu, p_pos, label FROM items")}
    with Monitor(plain, sinks=[]) as mon:
        mon.run()
        direct = {r[0]: r[1:] for r in mon.store.db.execute("SELECT id, p_neg, p_neu, p_pos, label FROM items")}
    assert set(backfilled) == set(direct) and len(direct) == 300
    assert all(backfilled[k][3] == direct[k][3] for k in direct)           # same labels
    assert max(abs(a - b) for k in direct for a, b in zip(backfilled[k][:3], direct[k][:3])) < 1e-4
    again = backfill(MonitorConfig.load(tmp_path / "ray" / "monitor.toml"), tmp_path / "archive.jsonl",
                     tmp_path / "scored", address=local_ray)
    assert again.scored_rows == 0 and again.skipped_parts >= 1 and again.items == 0   # nothing added twice
