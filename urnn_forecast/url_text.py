"""A URL's password hidden for messages, whatever characters it holds."""

import re

# scheme://user:<password>@...: the fallback where SQLAlchemy's reading fails or puts an '@'
# in the host (an unencoded '@' in the password); it hides to the last '@', more than the
# password where a query holds one, never less.
_TO_LAST_AT = re.compile(r"^([A-Za-z][\w+.-]*://[^:/@?#\s]*:)(.*)@([^@]*)$", re.DOTALL)


def password_hidden(url: str) -> str:
    """`url` with the password of its `user:password@` part as ***; as given when it has none.
    Read as SQLAlchemy reads it (a password may hold '/', '?' or '#': urllib stops at them and
    found no password, so the text was shown whole)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads (a bad port, no scheme)
        parsed = None
    if parsed is not None and parsed.password is None and "@" not in (parsed.host or ""):
        return url
    if parsed is not None and "@" not in (parsed.host or ""):
        return parsed.render_as_string(hide_password=True)
    found = _TO_LAST_AT.match(url)
    return url if found is None else f"{found.group(1)}***@{found.group(3)}"
