"""A URL's password hidden for messages, whatever characters it holds; the rest as written."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urnn_forecast.settings import Settings

# The start of a query: a '?' before `name=` (a '?' inside a password is followed by no '=').
_QUERY = re.compile(r"\?[\w.\-]+=")
_SCHEME = re.compile(r"^[A-Za-z][\w+.-]*://")
_USER = re.compile(_SCHEME.pattern + r"[^:/@?#]*:")


# Query parameters that carry secrets (libpq's password=, an http token=): their values too.
_SECRET_PARAMETER = re.compile(
    r"([?&;](?:password|passwd|pwd|token|access_token|secret|api_key|apikey)=)[^&;#]*",
    re.IGNORECASE,
)


def before_query(url: str) -> str:
    """A database URL without its query (which starts at a '?' before `name=`)."""
    query = _QUERY.search(url, url.find("://") + 3 if "://" in url else 0)
    return url[: query.start()] if query else url


def password_hidden(url: str) -> str:
    """`url` with the password of its `user:password@` part, and the values of query parameters
    that carry secrets (password=, token=, ...), as ***; as given when it has none.

    http(s) is read as urllib reads it (the password ends the netloc, before any '/'; an '@'
    in the path is a path). A database URL is read as SQLAlchemy reads it, where a password may
    hold '/', '?', '#' and, unencoded, '@': everything up to the last '@' before the query is
    masked, so a password is never shown in part (a database name holding '@' is masked too)."""
    from urllib.parse import urlsplit

    url = _SECRET_PARAMETER.sub(r"\1***", url)
    user = _USER.match(url)
    if user is None:  # no password there, or no scheme to tell where it is
        return url if _SCHEME.match(url) else _schemeless_hidden(url)
    if url.split(":", 1)[0].lower() in ("http", "https"):
        try:
            netloc = urlsplit(url).netloc
        except ValueError:
            netloc = url[len(url.split("://", 1)[0]) + 3 :].split("/", 1)[0]
        if "@" not in netloc or ":" not in netloc.rpartition("@")[0]:
            return url
        start = url.index(netloc)
        end = start + netloc.rindex("@")
    else:
        head = before_query(url)
        if "@" not in head[user.end() :]:
            return url
        end = head.rindex("@")
    return f"{url[: user.end()]}***{url[end:]}"


# Shorter texts are not masked where they appear on their own, outside a URL or a
# `:password@` / `password=` context: "urnn" (docker-compose's default) would mask every
# "urnn" in a log. Such a password is still masked in those contexts (jobs.worker).
MIN_MASKED_SECRET = 6


def _schemeless_hidden(url: str) -> str:
    """A URL mistyped before its '://' (`user:password@host/db`, `postgresql//u:p@h/db`):
    all before the last '@' of its head as ***, when a ':' there may start a password; shown
    whole, the refusal of such a URL quoted its password. A path holding '@' but no ':'
    (`/srv/a@b/mlflow`) is as written."""
    head = before_query(url)
    at = head.rfind("@")
    if at < 0 or ":" not in head[:at]:
        return url
    return f"***{url[at:]}"


def url_secrets(url: str, *, min_length: int = MIN_MASKED_SECRET) -> list[str]:
    """The texts `password_hidden` masks in `url` (the password of its `user:password@` part,
    the values of secret query parameters), each as written and percent-decoded, so that a
    text that quotes them elsewhere (a child process's output) can be masked too."""
    from urllib.parse import unquote

    found = [match.group(2) for match in _SECRET_VALUE.finditer(url)]
    queried = _SECRET_PARAMETER.sub(r"\1***", url)
    hidden = password_hidden(queried)
    user = _USER.match(queried)
    if hidden != queried and user is not None:
        suffix = hidden[user.end() + 3 :]  # password_hidden wrote prefix + "***" + suffix
        found.append(queried[user.end() : len(queried) - len(suffix)])
    elif hidden != queried:  # no scheme: "***" + the rest; the password follows a ':'
        masked = queried[: len(queried) - len(hidden) + 3]
        found += [masked.split(":", 1)[1], masked.rsplit(":", 1)[1]]
    secrets = {text for raw in found for text in (raw, unquote(raw))}
    return sorted((s for s in secrets if len(s) >= min_length), key=lambda s: (-len(s), s))


_SECRET_VALUE = re.compile(_SECRET_PARAMETER.pattern.replace(")[^&;#]*", ")([^&;#]*)"), re.I)


def secret_masker(settings: Settings) -> Callable[[str], str]:
    """A function writing each secret of `settings` as *** in a line of a job's output: the
    passwords (and secret query values) of the tracking URI, the artifact root and the
    database URL, and the API key. The output becomes the job's log tail, which GET /jobs
    answers to anyone who reaches the service unless URNN_API_KEY_FOR_READS is on, the
    worker's log and the run's `job/` artifact: `urnn train` printed the tracking URI whole
    (a database server store's password with it), and MLflow prints a tracking server's
    URL, user:password@ included, in its 'View run' line.

    A password is masked wherever it is written as one (`:password@`, `password=...`),
    whatever its length; on its own only from MIN_MASKED_SECRET characters and where its URL
    does not also hold it as a name (docker-compose's `urnn:urnn@postgres/urnn`: masking
    every "urnn" garbled the log and hid nothing)."""
    given = (settings.mlflow_tracking_uri, settings.mlflow_artifact_root, settings.database_url)
    urls = [url for url in given if url]
    # the URLs' other parts (schemes, users, hosts, databases): a password equal to one of
    # them is masked in context only
    names = {part for url in urls for part in re.split(r"[:/@?#&;=.+,\s]+", password_hidden(url))}
    contextual: set[str] = set()
    bare: set[str] = set()
    for url in urls:
        for secret in url_secrets(url, min_length=1):
            contextual.add(secret)
            if len(secret) >= MIN_MASKED_SECRET and secret not in names:
                bare.add(secret)
    if settings.api_key is not None:
        key = settings.api_key.get_secret_value()
        if len(key) >= 4:  # a key is a secret wherever it appears
            bare.add(key)
    if not contextual and not bare:
        return lambda line: line

    def alternatives(texts: set[str]) -> str:
        return "|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True))

    in_context = None
    if contextual:  # user:PASSWORD@host; password=PASSWORD, PGPASSWORD="PASSWORD", token: ...
        either = alternatives(contextual)
        in_context = re.compile(
            rf"(?<=:)(?:{either})(?=@)"
            rf"|(?P<key>(?i:password|passwd|pwd|token|secret|api_?key))"
            rf"(?P<sep>\s*[=:]\s*['\"]?)(?:{either})(?=['\"&;#\s]|$)"
        )
    # on its own: not inside a longer word ('postgres' in 'postgresql')
    alone = (
        re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives(bare)})(?![A-Za-z0-9])") if bare else None
    )

    def masked(match: re.Match[str]) -> str:
        return (match.group("key") or "") + (match.group("sep") or "") + "***"

    def mask(line: str) -> str:
        if in_context is not None:
            line = in_context.sub(masked, line)
        if alone is not None:
            line = alone.sub("***", line)
        return line

    return mask
