"""The web UI at ``/``: static files shipped inside the package (no build step)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from starlette.responses import Response

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# Only files the page loads itself: no fetch-by-path, so no path to traverse.
_ASSETS = frozenset({"app.js", "core.js", "chat.js", "markdown.js", "pair.js", "style.css",
                     "taskopts.js"})
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _file(name: str) -> Response:
    data = resources.files("localloom.web").joinpath(name).read_bytes()
    media = _TYPES[name[name.rfind("."):]]
    return Response(data, media_type=media, headers={"Content-Security-Policy": _CSP,
                                                     "Cache-Control": "no-cache"})


@router.get("/")
async def index() -> Response:
    """The page: public, like its script and style (no data in them); its API calls carry
    the token it was handed in the sign-in URL's fragment."""
    return _file("index.html")


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    """The page's script modules and style sheet."""
    if name not in _ASSETS:
        raise HTTPException(404, f"No such UI file '{name[:80]}'.")
    return _file(name)
