"""Defect-level tests of the server's limits against a real server process (loopback only):
a 200 MB chunked body is refused with 413 while it is read -- before auth, after auth, on every
POST route -- and the server's memory does not grow; slow bodies time out; too many requests in
flight get 503."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _bundle_helpers import make_run

from tuneforge.export import export_run

TOKEN = "limits-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def servers(tiny_encoder_dir, tiny_bot, tmp_path_factory):
    """A bundle server, a finance-monitor server and a support-bot server, each in its own process,
    with a token."""
    import shutil

    root = tmp_path_factory.mktemp("limits")
    shutil.copytree(tiny_bot.parent, root / "botproject", ignore=shutil.ignore_patterns("runs", "bot.sqlite*"))
    run = make_run(root / "runs", tiny_encoder_dir, "classification", n_rows=16)
    bundle = export_run(run, out_dir=root / "exports", variants=["fp32"], measure=False)
    (root / "monitor.toml").write_text('[model]\nscorer = "keywords"\n[state]\ndb = "monitor.db"\n')
    procs = {}
    env = {**os.environ, "TUNEFORGE_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    for name, args, route in (("bundle", [str(bundle)], "/v1/predict"),
                              ("finance-monitor", ["finance-monitor", "--app-path", str(root / "monitor.toml")],
                               "/v1/events"),
                              ("support-bot", ["support-bot", "--app-path", str(root / "botproject" / "bot")],
                               "/v1/chat"),
                              ("support-bot-feedback", ["support-bot", "--app-path", str(root / "botproject" / "bot")],
                               "/v1/feedback")):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "tuneforge", "serve", *args, "--port", str(port),
                                 "--body-timeout", "2"],
                                env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs[name] = (proc, port, route)
    try:
        for proc, port, _ in procs.values():
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read()
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
        yield procs
    finally:
        for proc, _, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=30)


def send_chunked(port: int, path: str, total: int, headers: dict) -> int:
    """POST ``total`` bytes as a chunked body; returns the status (the server may cut us off early)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", path)
    for k, v in {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **headers}.items():
        conn.putheader(k, v)
    conn.endheaders()
    chunk = b"a" * (1 << 20)
    sent = 0
    try:
        conn.send(b'%x\r\n{"texts": ["\r\n' % 12)
        while sent < total:
            conn.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass                                   # refused mid-body: what we want
    try:
        return conn.getresponse().status
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return 413 if sent < total else -1
    finally:
        conn.close()


@pytest.mark.parametrize("auth", [False, True], ids=["unauthenticated", "authenticated"])
@pytest.mark.parametrize("app", ["bundle", "finance-monitor", "support-bot", "support-bot-feedback"])
def test_a_200_mb_chunked_body_is_refused_without_memory_growth(servers, app, auth):
    proc, port, route = servers[app]
    before = rss_kb(proc.pid)
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    status = send_chunked(port, route, 200 * (1 << 20), headers)
    assert status == (413 if auth else 401)
    grown_mb = (rss_kb(proc.pid) - before) / 1024
    assert grown_mb < 20, f"server RSS grew {grown_mb:.1f} MB"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)      # and it still serves
    c.request("GET", "/healthz")
    assert c.getresponse().status == 200


def test_a_body_that_never_finishes_times_out(servers):
    proc, port, route = servers["bundle"]
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST {route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: "
              f"application/json\r\nContent-Length: 100\r\n\r\n{{\"texts\"".encode())
    s.settimeout(20)
    reply = b""
    while b'"timeout"' not in reply:
        data = s.recv(4096)
        if not data:
            break
        reply += data
    s.close()
    reply = reply.decode("latin-1")
    assert reply.startswith("HTTP/1.1 408") and '"type":"timeout"' in reply


def test_too_many_requests_in_flight_get_503_with_retry_after(tiny_encoder_dir, tmp_path):
    import asyncio

    from fastapi import APIRouter
    from fastapi.testclient import TestClient

    from tuneforge.application import LoadedApp
    from tuneforge.serve import ServerLimits, create_server, new_registry

    router = APIRouter()
    gate = asyncio.Event()

    @router.get("/slow")
    async def slow():
        try:
            await asyncio.wait_for(gate.wait(), 1.5)
        except asyncio.TimeoutError:
            pass
        return {"ok": True}

    @router.get("/fast")
    async def fast():
        return {"ok": True}

    app = create_server(LoadedApp(name="t", routers=[router]), registry=new_registry(),
                        limits=ServerLimits(max_in_flight=1))
    with TestClient(app) as client:
        import threading

        results = {}
        t = threading.Thread(target=lambda: results.update(slow=client.get("/slow").status_code))
        t.start()
        time.sleep(0.3)
        busy = client.get("/fast")
        t.join(10)
        after = client.get("/fast")
    assert results["slow"] == 200 and after.status_code == 200      # the slot is free again
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert json.loads(busy.text)["error"]["type"] == "busy"
