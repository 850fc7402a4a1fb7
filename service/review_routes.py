"""The alert review page (issue 7): `add_review_routes(app)` serves service/review/ at `/review/`.

Why static and public: the page is plain HTML, CSS and JavaScript with no data in it (no
build step, nothing fetched from a CDN: sites run offline). Everything it shows comes from
the API, called from the browser with the key the user types, so the page needs no
authentication of its own and the API's access rules apply unchanged.

The files go out with a strict Content-Security-Policy: scripts and styles only from this
origin (no inline code, no eval), media and images only from here or from the blob: URLs the
page makes of clips fetched with the key, no framing, and Trusted Types required, so a
stray `innerHTML` with alert text throws instead of injecting markup.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REVIEW_DIR = Path(__file__).resolve().parent / "review"
REVIEW_PATH = "/review"

SECURITY_HEADERS = {
    "Content-Security-Policy": "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' blob:",
            "media-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        ]
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidate: an upgraded service serves the new page at once
}


class _WithHeaders:
    """Adds fixed headers to every response of the wrapped ASGI app (the static files)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_review_routes(app: FastAPI) -> None:
    """Mount the review page on `app` at `/review/` (and redirect `/review` there).

    Idempotent, so wiring it in `create_app`/`build_service` and calling it again (tests) is
    harmless.
    """
    if any(getattr(route, "path", None) == REVIEW_PATH for route in app.routes):
        return

    @app.get(REVIEW_PATH, include_in_schema=False)
    def review_redirect() -> RedirectResponse:
        # Relative, so it stays right behind a reverse proxy that mounts the API under a prefix.
        return RedirectResponse("review/", status_code=308)

    static = StaticFiles(directory=REVIEW_DIR, html=True)
    app.mount(REVIEW_PATH, _WithHeaders(static, SECURITY_HEADERS), name="review")


__all__ = ["REVIEW_DIR", "REVIEW_PATH", "SECURITY_HEADERS", "add_review_routes"]
