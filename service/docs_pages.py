"""The headers of FastAPI's documentation pages (/docs, /redoc, /docs/oauth2-redirect): a
Content-Security-Policy that allows what each page loads and nothing else, nosniff, and
frame-ancestors 'none' (no other site may frame them).

What the pages load is FastAPI's choice (fastapi.openapi.docs): Swagger UI and ReDoc from
cdn.jsdelivr.net, ReDoc's fonts from Google Fonts and its footer logo from cdn.redoc.ly, a
favicon from fastapi.tiangolo.com, and /openapi.json from this service (checked in headless
Chromium with those scripts served locally: both pages render, with no CSP violation). No
installed package carries a copy of those scripts, so the pages need the internet
(docs/serving.md says so); /openapi.json does not.

The policy is added by wrapping those three routes' ASGI apps: no other route, /forecast
least of all, does any work for it. Their inline scripts are allowed by their SHA-256 hashes,
read from the page as served (its URLs follow the request's root_path), not by
'unsafe-inline'. Styles are allowed inline: ReDoc (styled-components) writes <style>
elements at run time (blocked, the page renders unstyled), and Swagger UI, which rendered
without them here, is reported to in some views (swagger-ui issue 10655) and is loaded as
"@5", whatever 5.x the CDN has; a style cannot run script.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CDN = "https://cdn.jsdelivr.net"
FAVICON = "https://fastapi.tiangolo.com"
REDOC_LOGO = "https://cdn.redoc.ly"  # ReDoc's "API docs by Redocly" footer image
# Every page: nothing unless listed, no <base> to re-point relative URLs, no framing, no
# form posts elsewhere.
COMMON = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
SWAGGER_UI = (
    f"{COMMON}; script-src {CDN}{{inline}}; style-src {CDN} 'unsafe-inline'; "
    f"img-src 'self' data: {FAVICON}; connect-src 'self'"
)
REDOC = (
    f"{COMMON}; script-src {CDN}; style-src 'unsafe-inline' https://fonts.googleapis.com; "
    f"font-src https://fonts.gstatic.com; img-src 'self' data: {FAVICON} {REDOC_LOGO}; "
    "connect-src 'self'; worker-src blob:"
)
# The OAuth2 redirect page: one inline script that hands the code to the opener, no loads.
OAUTH2_REDIRECT = f"{COMMON}; script-src{{inline}}"

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def secure_docs_pages(app: FastAPI) -> None:
    """Wrap the app's documentation routes (those FastAPI's setup added) with their headers."""
    pages: dict[str, str] = {}
    if app.openapi_url and app.docs_url:
        pages[app.docs_url] = SWAGGER_UI
        if app.swagger_ui_oauth2_redirect_url:
            pages[app.swagger_ui_oauth2_redirect_url] = OAUTH2_REDIRECT
    if app.openapi_url and app.redoc_url:
        pages[app.redoc_url] = REDOC
    for route in app.router.routes:
        if isinstance(route, Route) and route.path in pages:
            route.app = with_headers(route.app, pages[route.path])


def page_policy(template: str, html: bytes) -> str:
    """`template` with `{inline}` as the hashes of `html`'s inline scripts (none: nothing, and
    a `script-src` left with no source allows no script)."""
    hashes = "".join(
        " 'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return template.format(inline=hashes)


def with_headers(app: ASGIApp, template: str) -> ASGIApp:
    """`app`, its answer held until its body is whole (a page of a few KB) so that the
    policy can name the hashes of its inline scripts."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        body: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            html = b"".join(body)
            headers = [
                *start.get("headers", ()),
                (b"content-security-policy", page_policy(template, html).encode()),
                (b"x-content-type-options", b"nosniff"),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": html})

        await app(scope, receive, hold)

    return wrapped
