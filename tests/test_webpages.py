"""core's page serving (tuneforge.webpages), without a browser: the exact public paths, content types,
the strict CSP, ETag revalidation, no traversal, nothing but the page files public; the three apps' pages
(tests/test_browser.py drives them in Chromium)."""

from __future__ import annotations

import os

import pytest

from tuneforge.application import LoadedApp
from tuneforge.errors import UsageError
from tuneforge.serve import create_server, new_registry
from tuneforge.webpages import CSP, WebPages

TOKEN = "p4ges-t0ken"


@pytest.fixture
def folder(tmp_path):
    web = tmp_path / "web"
    (web / "img").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>t</title>")
    (web / "app.js").write_text("console.log(1)")
    (web / "img" / "dot.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (web / ".secret.js").write_text("hidden")
    (web / "notes.py").write_text("print('not a page file')")
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink(tmp_path / "outside.txt", web / "link.txt")
    return web


def _client(pages):
    from fastapi import APIRouter
    from fastapi.testclient import TestClient

    api = APIRouter()
    api.add_api_route("/v1/thing", lambda: {"ok": True}, methods=["GET"])
    loaded = LoadedApp(name="paged", routers=[api], pages=pages)
    return TestClient(create_server(loaded, registry=new_registry(), token=TOKEN))


def test_pages_are_public_exact_paths_with_types_csp_and_etags(folder):
    pages = WebPages(folder)
    assert pages.public_paths == {"/", "/web/app.js", "/web/img/dot.svg", "/web/tuneforge.js", "/web/tuneforge.css",
                                  "/web/favicon.svg"}
    with _client(pages) as client:
        index = client.get("/")
        assert index.status_code == 200 and index.headers["content-type"] == "text/html; charset=utf-8"
        assert index.headers["content-security-policy"] == CSP and "default-src 'self'" in CSP
        assert index.headers["x-content-type-options"] == "nosniff"
        assert index.headers["cache-control"] == "no-cache" and index.headers["etag"]
        assert client.get("/web/app.js").headers["content-type"] == "text/javascript; charset=utf-8"
        assert client.get("/web/img/dot.svg").headers["content-type"] == "image/svg+xml"
        assert client.get("/web/tuneforge.js").status_code == 200            # core's shared files
        again = client.get("/", headers={"If-None-Match": index.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        # without the token: only the page files; the API, unknown paths and traversal are refused
        for path in ("/v1/thing", "/web/.secret.js", "/web/notes.py", "/web/link.txt", "/web/../pyproject.toml",
                     "/web/%2e%2e/outside.txt", "/web/", "/web", "/index.html", "/metrics"):
            assert client.get(path).status_code == 401, path
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/v1/thing", headers=auth).json() == {"ok": True}
        for path in ("/web/.secret.js", "/web/notes.py", "/web/link.txt", "/web/%2e%2e/outside.txt", "/web/"):
            assert client.get(path, headers=auth).status_code == 404, path   # never served, token or not
        assert "/" not in client.get("/openapi.json", headers=auth).json()["paths"]   # pages are not API


def test_a_page_folder_needs_an_index_and_no_clash_with_core_files(tmp_path):
    with pytest.raises(UsageError, match="no index.html"):
        WebPages(tmp_path)
    (tmp_path / "index.html").write_text("x")
    (tmp_path / "tuneforge.js").write_text("x")
    with pytest.raises(UsageError, match="core's shared page files"):
        WebPages(tmp_path)
    with pytest.raises(TypeError, match="WebPages"):
        LoadedApp(name="x", pages=object())


@pytest.mark.parametrize("package, assets", [
    ("tuneforge.plugins.support_bot", {"/web/chat.js", "/web/chat.css"}),
    ("tuneforge.plugins.finance", {"/web/monitor.js", "/web/chart.js", "/web/monitor.css"}),
    ("tuneforge.plugins.recommender", {"/web/recommender.js", "/web/recommender.css"}),
])
def test_each_app_page_references_only_files_it_serves(package, assets):
    import re

    pages = WebPages.of(package)
    assert assets <= pages.public_paths
    index = pages.files["/"].body.decode()
    refs = re.findall(r'(?:src|href)="([^"]+)"', index)
    assert refs and all("/" + r in pages.public_paths for r in refs), refs   # relative, all served
    assert "<script>" not in index and "style=" not in index and "http" not in index.replace("http://www.w3", "")
