"""Scale-out on Ray (issue 17): Serve overhead, Ray Data throughput + resume, loadtest with kill -9.

    python bench/scale_out.py overhead  --bundle exports/support-intents/v1 [--rounds 6 --requests 150]
    python bench/scale_out.py data      --bundle exports/support-intents/v1 [--texts 100000]
    python bench/scale_out.py loadtest  --bot-dir bots/support-bot [--clients 20 --seconds 30]
                                        [--store postgresql://...]   (or env TUNEFORGE_STORE)

``overhead``: the plain server and ``--engine ray --replicas 1`` serve the same bundle at the same
time; one client sends ``/v1/predict`` (one text) to each in turn, ``--requests`` per server per
round, the order swapped every round; per-request p50 / p95 of each and their difference.

``data``: ``tuneforge predict --file`` (one process, JSONL to a file) and ``tuneforge predict
--engine ray --out DIR`` (a local Ray started by the command, its start-up included) on the same
``--texts`` texts; wall times and their ratio.  Then the resume drill on a Ray instance this
script holds: the job is killed with SIGKILL once half of its parts are written, started again,
and the merged output is checked: every id exactly once, in input order.

``loadtest``: ``tuneforge support-bot loadtest``'s client (20 clients, 30 s) against ``tuneforge serve
support-bot --engine ray --replicas 2`` on a copy of the bot folder, then the same with one
replica killed with ``kill -9`` a third of the way in: errors by kind (retryable or not), when the
replacement replica's process started, when the last failed request came, and whether every
answered turn is in the store.  ``--store URL`` puts the bot's store in PostgreSQL (each drill's bot copy
gets its own schema); ``--serve-arg`` adds other options to ``tuneforge serve``.

Results: bench/results/scale_out_<part>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
TF = [sys.executable, "-m", "tuneforge"]


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def save(part: str, result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"cpu": cpu(), "cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0], **result}
    (RESULTS / f"scale_out_{part}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def serve(args: list[str], port: int) -> subprocess.Popen:
    from tuneforge.ray_serve import wait_ready

    proc = subprocess.Popen([*TF, "serve", *args, "--port", str(port)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(f"http://127.0.0.1:{port}", timeout=300, proc=proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_replicas(n: int, timeout: float = 120) -> list[int]:
    from tuneforge.ray_serve import replica_pids

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = replica_pids()
        if len(pids) >= n:
            return pids
        time.sleep(0.2)
    raise RuntimeError(f"fewer than {n} replicas after {timeout:.0f} s")


def pct(ms: list[float]) -> dict:
    a = np.array(ms)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2)}


# -- Serve overhead ------------------------------------------------------------------------------------
def overhead(a) -> None:
    from tuneforge.plugins.support_bot.loadtest import free_port

    ports = {"plain": free_port(), "ray": free_port()}
    procs = {"plain": serve([a.bundle], ports["plain"])}
    procs["ray"] = serve([a.bundle, "--engine", "ray", "--replicas", "1"], ports["ray"])
    body = json.dumps({"text": "I still have not received my new card"})
    lat: dict[str, list[float]] = {"plain": [], "ray": []}
    try:
        conns = {k: http.client.HTTPConnection("127.0.0.1", p, timeout=30) for k, p in ports.items()}

        def one(kind):
            t = time.perf_counter()
            conns[kind].request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
            r = conns[kind].getresponse()
            r.read()
            assert r.status == 200, r.status
            return (time.perf_counter() - t) * 1000

        for kind in lat:                      # warm both
            for _ in range(30):
                one(kind)
        for r in range(a.rounds):
            for kind in (("plain", "ray") if r % 2 == 0 else ("ray", "plain")):
                # a fresh keep-alive connection per block (servers close idle ones after 5 s), warmed
                conns[kind].close()
                conns[kind] = http.client.HTTPConnection("127.0.0.1", ports[kind], timeout=30)
                for _ in range(3):
                    one(kind)
                lat[kind].extend(one(kind) for _ in range(a.requests))
    finally:
        for p in procs.values():
            stop(p)
    res = {k: pct(v) for k, v in lat.items()}
    res["ray_minus_plain_ms"] = {q: round(res["ray"][q] - res["plain"][q], 2) for q in ("p50_ms", "p95_ms")}
    save(f"overhead{('_' + a.tag) if a.tag else ''}", {"bundle": a.bundle, "rounds": a.rounds, "requests_per_round": a.requests, **res})


# -- Ray Data ------------------------------------------------------------------------------------------
def write_texts(path: Path, n: int) -> None:
    import random

    sys.path.insert(0, str(ROOT / "bench"))
    rng = random.Random(0)
    try:
        from tuneforge.plugins.support_bot.datasets import labelled_questions

        base = [q for q, _ in labelled_questions()]
    except Exception:  # noqa: BLE001
        base = ["where is my card", "how do I top up", "my transfer failed", "refund not showing up"]
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"t{i}", "text": rng.choice(base)}) + "\n")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env={**ENV, **os.environ}, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stderr[-4000:]}")
    return out


def check_output(out: Path, n: int) -> dict:
    from tuneforge.ray_data import read_output

    ids = [r["id"] for r in read_output(out)]
    return {"rows": len(ids), "distinct_ids": len(set(ids)), "in_input_order": ids == [f"t{i}" for i in range(n)],
            "missing": n - len(set(ids)), "duplicated": len(ids) - len(set(ids))}


def data(a) -> None:
    import ray

    from tuneforge.ray_serve import init_ray

    work = Path(tempfile.mkdtemp(prefix="tf-scale-data-"))
    src = work / "texts.jsonl"
    write_texts(src, a.texts)
    res: dict = {"bundle": a.bundle, "texts": a.texts, "shard_rows": a.shard_rows}
    t = time.perf_counter()
    with open(work / "plain.jsonl", "w") as f:
        subprocess.run([*TF, "predict", a.bundle, "--file", str(src)], stdout=f, env=ENV, check=True)
    plain_s = time.perf_counter() - t
    t = time.perf_counter()
    out = run([*TF, "predict", a.bundle, "--file", str(src), "--engine", "ray", "--out", str(work / "ray"),
               "--shard-rows", str(a.shard_rows)])
    ray_s = time.perf_counter() - t
    job = json.loads(out.stdout)
    res["plain"] = {"wall_s": round(plain_s, 1), "texts_per_s": round(a.texts / plain_s, 1)}
    res["ray"] = {"wall_s": round(ray_s, 1), "texts_per_s": round(a.texts / ray_s, 1), "actors": job["actors"],
                  "job_s_without_ray_start": job["seconds"], "output": check_output(work / "ray", a.texts)}
    res["ray_over_plain_throughput"] = round(plain_s / ray_s, 2)
    save("data", res)

    # resume: a Ray instance held here; the job (a child driver) is killed halfway and started again
    init_ray(num_cpus=os.cpu_count())
    try:
        address = ray.get_runtime_context().gcs_address
        resumed = work / "resumed"
        cmd = [*TF, "predict", a.bundle, "--file", str(src), "--engine", "ray", "--out", str(resumed),
               "--shard-rows", str(a.shard_rows), "--address", address]
        shards = -(-a.texts // a.shard_rows)
        # the environment now holds this Ray's auth token (Ray 2.60 token auth): children need it
        first = subprocess.Popen(cmd, env={**ENV, **os.environ}, stdout=subprocess.DEVNULL, stderr=open(work / "first.err", "w"))
        while len(list(resumed.glob("part-*"))) < shards // 2 and first.poll() is None:
            time.sleep(0.05)
        if first.poll() is not None:
            raise SystemExit(f"the first run ended by itself ({first.returncode}): "
                             f"{(work / 'first.err').read_text()[-4000:]}")
        first.send_signal(signal.SIGKILL)
        first.wait()
        done_before = len(list(resumed.glob("part-*")))
        t = time.perf_counter()
        again = run(cmd)
        rerun_s = time.perf_counter() - t
        report = json.loads(again.stdout)
        res["resume"] = {"parts": shards, "parts_when_killed": done_before, "skipped_on_restart": report["skipped_shards"],
                         "scored_on_restart": report["scored_shards"], "rows_scored_on_restart": report["scored_rows"],
                         "restart_wall_s": round(rerun_s, 1), "output": check_output(resumed, a.texts)}
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    save("data", res)


# -- loadtest ------------------------------------------------------------------------------------------
def loadtest(a) -> None:
    from tuneforge.plugins.support_bot.datasets import kb_questions, labelled_questions, out_of_scope
    from tuneforge.plugins.support_bot.loadtest import run_load

    messages = [q for q, _ in labelled_questions()[:500]] + [q for q, _ in kb_questions()] + out_of_scope()
    # copies sit beside the bot folder: its relative paths (../../exports/...) still resolve
    work = Path(tempfile.mkdtemp(prefix=".scale-out-", dir=Path(a.bot_dir).resolve().parent))
    serve_args = ("--engine", "ray", "--replicas", str(a.replicas), *a.serve_arg)
    from tuneforge.database import redact_url

    res: dict = {"bot_dir": a.bot_dir, "clients": a.clients, "seconds": a.seconds, "serve_args": list(serve_args),
                 "store": redact_url(a.store) if a.store else "bot.sqlite (shared by the replicas)"}
    try:
        for drill in ("steady", "kill -9 one replica"):
            bot = work.parent / f"{work.name}-{drill.replace(' ', '-')}"
            shutil.copytree(a.bot_dir, bot, ignore=shutil.ignore_patterns("bot.sqlite*"), symlinks=True)
            events: dict = {}

            def killer(proc, port, events=events):
                pids = wait_replicas(a.replicas)
                time.sleep(a.seconds / 3)
                events["killed_pid"] = pids[0]
                events["kill_at"] = time.monotonic()
                os.kill(pids[0], signal.SIGKILL)
                from tuneforge.ray_serve import replica_pids

                while time.monotonic() - events["kill_at"] < a.seconds:
                    now = [p for p in replica_pids() if p not in pids]
                    if now:
                        events["replacement_process_after_s"] = round(time.monotonic() - events["kill_at"], 1)
                        break
                    time.sleep(0.1)

            sent: list = []
            report = run_load(bot, messages, clients=a.clients, seconds=a.seconds, serve_args=serve_args, store=a.store,
                              ready_timeout=300, during=killer if drill.startswith("kill") else None,
                              sent_out=sent)
            out = report.to_dict()
            if "kill_at" in events:
                fails = [s["at"] - events["kill_at"] for s in sent if "error" in s and "at" in s]
                out["kill"] = {"replacement_process_after_s": events.get("replacement_process_after_s"),
                               "failed_requests": len(fails),
                               "last_failure_after_kill_s": round(max(fails), 2) if fails else None,
                               "first_failure_after_kill_s": round(min(fails), 2) if fails else None}
            res[drill] = out
    finally:
        for drill in ("steady", "kill-9-one-replica"):
            shutil.rmtree(work.parent / f"{work.name}-{drill}", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    save("loadtest", res)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--bundle", required=True)
    o.add_argument("--rounds", type=int, default=6)
    o.add_argument("--requests", type=int, default=150)
    o.add_argument("--tag", default="", help="suffix of the result file (scale_out_overhead_TAG.json)")
    d = sub.add_parser("data")
    d.add_argument("--bundle", required=True)
    d.add_argument("--texts", type=int, default=100_000)
    d.add_argument("--shard-rows", type=int, default=5_000)
    t = sub.add_parser("loadtest")
    t.add_argument("--bot-dir", required=True)
    t.add_argument("--clients", type=int, default=20)
    t.add_argument("--seconds", type=float, default=30.0)
    t.add_argument("--replicas", type=int, default=2)
    t.add_argument("--serve-arg", action="append", default=[], help="extra option for tuneforge serve (repeat)")
    t.add_argument("--store", default=os.environ.get("TUNEFORGE_STORE"),
                   help="the bot's store (a postgresql:// URL; default env TUNEFORGE_STORE, else bot.sqlite): the "
                        "servers write it, the check reads it")
    a = p.parse_args()
    {"overhead": overhead, "data": data, "loadtest": loadtest}[a.part](a)


if __name__ == "__main__":
    main()
