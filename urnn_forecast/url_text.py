"""A URL's password hidden for messages, whatever characters it holds."""

import re

# scheme://user:<password>@host...: the password runs to the last '@' (SQLAlchemy reads an
# unencoded '/' in it as part of it; urllib stops at the '/' and found no password, so the
# text was shown whole). An '@' in a query makes more than the password hidden, never less.
_PASSWORD = re.compile(r"^([A-Za-z][\w+.-]*://[^:/@?#\s]*:)([^?#]*)@([^@]*)$")


def password_hidden(url: str) -> str:
    """`url` with the password of its `user:password@` part as ***; as given when it has none."""
    found = _PASSWORD.match(url)
    if found is None or not found.group(2):
        return url
    return f"{found.group(1)}***@{found.group(3)}"
