"""The built web app (clients/web, built by `make web` into `static/` beside this module; not
committed). Files are served as they are; any other GET path is the app's own route
(/runs/..., /templates/...), answered with index.html so that a link or a reload works."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
NOT_BUILT = (
    "the web view's assets are not built: run `make web` (or `make run`) in the Sluice source "
    "tree; the gRPC-Web API is served all the same"
)
# The app loads only its own files and speaks only to its origin; React Flow sets inline
# styles, hence 'unsafe-inline' for styles alone.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def built(root: Path | None = None) -> bool:
    return ((root or STATIC) / "index.html").is_file()


class Assets:
    def __init__(self, root: Path | None = None) -> None:
        self._root = (root or STATIC).resolve()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not built(self._root):
            return web.Response(status=503, text=NOT_BUILT + "\n")
        found = self._file(request.path)
        if found is None:
            return web.FileResponse(
                self._root / "index.html",
                headers={**_SECURITY_HEADERS, "Cache-Control": "no-cache"},
            )
        # Vite names what it builds under assets/ by content hash: cache those for good.
        hashed = found.parent.name == "assets"
        cache = "public, max-age=31536000, immutable" if hashed else "no-cache"
        return web.FileResponse(found, headers={**_SECURITY_HEADERS, "Cache-Control": cache})

    def _file(self, path: str) -> Path | None:
        """The file under the root that `path` names; None for a route of the app (or a path
        that would leave the root)."""
        relative = path.lstrip("/")
        if not relative:
            return None
        candidate = (self._root / relative).resolve()
        if not candidate.is_relative_to(self._root) or not candidate.is_file():
            return None
        return candidate
