"""What a streaming series id may be: one URL path segment that GET/DELETE /series/{id} can
name, and a text PostgreSQL can store. One definition for the routes' path parameter, the
fast path, the WebSocket and the messages that state the rule."""

from __future__ import annotations

SERIES_ID_MAX = 200
# no "/", no control characters (C0, DEL and C1: NUL would not store in PostgreSQL, U+0085 is a
# line break), not blank (a character other than whitespace, Unicode's too: U+3000, U+00A0),
# not "." or ".." (URL dot-segments: clients remove /series/../ from a path before sending
# it). No lookaround: pydantic's regular expressions (Rust's) have none, so a character other
# than whitespace and "." is required, or three dots or more.
SERIES_ID_PATTERN = (
    r"^(?:\.{3,}|[^/\x00-\x1f\x7f-\x9f]*[^/.\x00-\x20\x7f-\x9f\s][^/\x00-\x1f\x7f-\x9f]*)$"
)
SERIES_ID_RULE = (
    f"a string of 1 to {SERIES_ID_MAX} characters, not blank, not '.' or '..' (nor those with "
    "spaces around them), without '/' or control characters"
)
