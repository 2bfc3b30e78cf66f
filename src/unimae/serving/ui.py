"""The browser page of ``unimae serve``: ``GET /`` and the few static files it loads, from the package.

The page (``static/``: one HTML file, one script, one style sheet, an icon; no build step, no library,
nothing fetched from another origin) calls the same JSON routes as any client, with the same key, so the
Host check, API key and body limits apply to it too. The page files themselves need no key (they hold no
data); every response carries a Content-Security-Policy that allows only this origin's script, style,
images and requests, and no inline script (docs/security.md).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from unimae.serving.errors import APIError

STATIC = resources.files("unimae.serving") / "static"
PAGE = "index.html"
ASSETS = {  # file name -> media type: the only files served under /ui/
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page_paths() -> tuple[str, ...]:
    """The paths of the page and its files: they need no API key (the data routes they call do)."""
    return ("/", *(f"/ui/{name}" for name in ASSETS))


def _file(name: str, media_type: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)


router = APIRouter()


@router.get("/", include_in_schema=False)
async def page():
    return _file(PAGE, "text/html; charset=utf-8")


@router.get("/ui/{name}", include_in_schema=False)
async def asset(name: str):
    if name not in ASSETS:
        raise APIError(404, f"no page file {name!r}", None, "not_found")
    return _file(name, ASSETS[name])
