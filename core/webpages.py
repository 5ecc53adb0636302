"""An app's web page, served by core: the files of one package folder at fixed, public paths.

A plugin only says which folder (``LoadedApp(..., pages=WebPages.of(__package__))`` serves its
``web/`` folder); core does the rest, the same way for every app:

``GET /``            the folder's ``index.html``
``GET /web/NAME``    every other file of the folder (and core's shared ``core/web`` files:
                     ``tuneforge.js``, ``tuneforge.css``, ``favicon.svg``)

Only those exact paths exist -- one route per file, read once at load time, no path
parameter -- so there is no directory listing and nothing to traverse to; dot-files, links
that leave the folder and unknown file types are not served.  Each answer has its content
type, a strict ``Content-Security-Policy`` (``default-src 'self'``: no inline script or style,
nothing from another origin), ``nosniff``, ``no-referrer``, an ``ETag`` and
``Cache-Control: no-cache`` (the browser revalidates; an unchanged file is a 304).

The page paths are public (the page holds no secret: the token is typed in or passed in the
URL fragment and kept in the tab's sessionStorage); the APIs the page calls stay behind the
token.  See docs/web.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from .errors import UsageError

SHARED = Path(__file__).resolve().parent / "web"
PREFIX = "/web/"
INDEX = "index.html"
MAX_FILE_BYTES = 2_000_000
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
CSP = ("default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; "
       "frame-ancestors 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class PageFile:
    """One served file: its URL path, bytes, content type and ETag."""

    path: str
    body: bytes
    media_type: str
    etag: str


@dataclass
class WebPages:
    """The files of ``folder`` (plus core's shared files) as routes; ``public_paths`` lists them."""

    folder: Path
    shared: Path | None = SHARED
    files: dict[str, PageFile] = field(init=False, repr=False)

    def __post_init__(self):
        self.folder = Path(self.folder)
        if not (self.folder / INDEX).is_file():
            raise UsageError(f"{self.folder}: no {INDEX}", hint="a web page folder needs an index.html")
        files: dict[str, PageFile] = {}
        for folder in ([self.shared] if self.shared is not None else []) + [self.folder]:
            for name, path in _servable(Path(folder)):
                url = "/" if (folder == self.folder and name == INDEX) else PREFIX + name
                if url in files:
                    raise UsageError(f"{self.folder}: {name} is also one of core's shared page files",
                                     hint="rename it")
                body = path.read_bytes()
                files[url] = PageFile(url, body, TYPES[path.suffix.lower()],
                                      '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
        self.files = files

    @classmethod
    def of(cls, package: str, folder: str = "web") -> "WebPages":
        """The ``folder`` (default ``web/``) of an installed package, e.g. ``WebPages.of(__package__)``."""
        from importlib.resources import files

        return cls(Path(str(files(package).joinpath(folder))))

    @property
    def public_paths(self) -> frozenset:
        return frozenset(self.files)

    def router(self):
        """A FastAPI router with one GET (and HEAD) route per file, left out of the OpenAPI document."""
        from fastapi import APIRouter

        router = APIRouter()
        for page in self.files.values():
            router.add_api_route(page.path, _endpoint(page), methods=["GET", "HEAD"], include_in_schema=False)
        return router


def _servable(folder: Path):
    """``(url name, path)`` of the files under ``folder`` a browser may fetch."""
    root = folder.resolve()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(not _NAME.match(part) for part in rel.parts):
            continue                      # dot-files and odd names are never served
        if path.suffix.lower() not in TYPES or path.stat().st_size > MAX_FILE_BYTES:
            continue
        if root not in path.resolve().parents:
            continue                      # a link that leaves the folder
        yield "/".join(rel.parts), path


def _endpoint(page: PageFile):
    def serve(request: Request) -> Response:
        headers = {**HEADERS, "ETag": page.etag}
        if page.etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(page.body, media_type=page.media_type, headers=headers)

    serve.__name__ = "page_" + re.sub(r"\W", "_", page.path)
    return serve
