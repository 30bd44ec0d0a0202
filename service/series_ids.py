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
# Nor U+FFFD anywhere: it is what a path's bytes that are not UTF-8 decode to (%FF, %FE ...),
# so every such id named one series. And a visible character is required: zero-width spaces,
# joiners, the byte-order mark and the soft hyphen (format characters, not Unicode spaces) made
# ids that look blank.
_BANNED = r"/\x00-\x1f\x7f-\x9f\uFFFD"
_INVISIBLE = r"\u00AD\u200B-\u200F\u2028-\u202E\u2060-\u206F\uFEFF"
SERIES_ID_PATTERN = rf"^(?:\.{{3,}}|[^{_BANNED}]*[^.\x20\s{_BANNED}{_INVISIBLE}][^{_BANNED}]*)$"
SERIES_ID_RULE = (
    f"a string of 1 to {SERIES_ID_MAX} characters, not blank or invisible (zero-width "
    "characters alone), not '.' or '..' (nor those with spaces around them), without '/', "
    "control characters or U+FFFD (what bytes that are not UTF-8 decode to: write the id in "
    "UTF-8, percent-encoded)"
)
