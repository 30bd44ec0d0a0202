"""/docs, /redoc and /docs/oauth2-redirect carry a Content-Security-Policy that allows what
each page loads and nothing else, nosniff, and frame-ancestors 'none'."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")


def policy(header: str) -> dict[str, list[str]]:
    """The CSP header as {directive: [sources]}."""
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            assert words[0] not in directives, f"{words[0]} twice in {header!r}"
            directives[words[0]] = words[1:]
    return directives


def allowed(sources: list[str], url: str) -> bool:
    """Whether a CSP source list allows `url` (the forms these pages use: 'self', a scheme,
    an origin)."""
    parts = urlsplit(url)
    if not parts.scheme:  # a path of this service
        return "'self'" in sources
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin in sources or f"{parts.scheme}:" in sources


def inline_hashes(html: str) -> list[str]:
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, re.S)
    ]


@pytest.mark.parametrize("path", PAGES)
def test_the_docs_pages_carry_a_policy_that_allows_what_they_load(
    client: TestClient, path: str
) -> None:
    """They had no CSP at all: an HTML page of the service's origin that anything injected
    into it (the schema's descriptions and examples are rendered there) could run scripts
    from anywhere on, or that another site could frame."""
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    csp = policy(answer.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    html = answer.text
    scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", html)
    for url in scripts:
        assert allowed(csp["script-src"], url), (url, csp["script-src"])
    links = re.findall(r"<link\b[^>]*>", html)
    assert links or path == "/docs/oauth2-redirect"
    for link in links:
        rel = re.search(r'\brel="([^"]+)"', link)
        url = re.search(r'\bhref="([^"]+)"', link)
        assert rel is not None and url is not None, link
        directive = "style-src" if rel[1] == "stylesheet" else "img-src"  # else: the favicon
        assert allowed(csp[directive], url[1]), (link, csp[directive])
    # the inline scripts by their hashes, not by 'unsafe-inline' (which a hash switches off)
    assert "'unsafe-inline'" not in csp["script-src"]
    for digest in inline_hashes(html):
        assert digest in csp["script-src"], (digest, csp["script-src"])
    if path != "/docs/oauth2-redirect":  # the pages that read the schema and send requests
        assert allowed(csp["connect-src"], "/openapi.json")
        assert csp["connect-src"] == ["'self'"]
    # nothing of the pages' beyond what they load: no wildcard, no scheme-wide https:
    for sources in csp.values():
        assert "*" not in sources and "https:" not in sources and "'unsafe-eval'" not in sources
    head = client.head(path)
    assert head.headers["content-security-policy"] == answer.headers["content-security-policy"]


def test_the_redoc_page_gets_its_fonts_and_search_worker(client: TestClient) -> None:
    csp = policy(client.get("/redoc").headers["content-security-policy"])
    assert "https://fonts.googleapis.com" in csp["style-src"]  # the page's font stylesheet
    assert csp["font-src"] == ["https://fonts.gstatic.com"]
    assert csp["worker-src"] == ["blob:"]  # ReDoc's search index runs in a blob: worker
    assert "https://cdn.redoc.ly" in csp["img-src"]  # its footer's logo


def test_the_api_answers_carry_no_page_policy(client: TestClient) -> None:
    """The headers are the docs pages' own: the JSON routes, /forecast above all (its answer
    is benchmarked per request), get none of them."""
    for path in ("/openapi.json", "/model", "/healthz"):
        answer = client.get(path)
        assert "content-security-policy" not in answer.headers, path
