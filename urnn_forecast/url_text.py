"""A URL's password hidden for messages, whatever characters it holds; the rest as written."""

import re

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
