"""Fonts for the backtest plots' text: series ids and column names in any script, never boxes.

matplotlib draws with DejaVu Sans, which has no CJK glyphs: a series '北京-01' was drawn as
empty boxes, and matplotlib only warned "Glyph ... missing from font(s) DejaVu Sans". A text
is drawn with the first font installed that has a glyph for each of its characters: DejaVu
Sans first, then the CJK families of fonts-noto-cjk and the like, then any other font
matplotlib finds. Where none has them, the text is written in ASCII instead (`\\u5317\\u4eac-01`)
and the caller says so. Nothing is downloaded.
"""

from __future__ import annotations

import functools

# Tried first, in this order; every other installed font after them.
PREFERRED_FAMILIES = (
    "DejaVu Sans",
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK KR",
    "Noto Sans CJK TC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "Noto Sans",
)
# matplotlib's own last resort has a "glyph" for every code point: a box naming its block,
# which is what this module is here to avoid.
_NOT_A_FONT_FOR_TEXT = ("Last Resort",)
FALLBACK_FAMILY = "DejaVu Sans"


@functools.cache
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file FreeType cannot read
        return frozenset()


@functools.cache
def _installed() -> tuple[tuple[str, str], ...]:
    """(family, file) of the regular faces matplotlib knows, the preferred families first."""
    from matplotlib import font_manager

    rank = {name: i for i, name in enumerate(PREFERRED_FAMILIES)}
    fonts = [
        (font.name, font.fname)
        for font in font_manager.fontManager.ttflist
        if font.style == "normal" and not font.name.startswith(_NOT_A_FONT_FOR_TEXT)
    ]
    fonts.sort(key=lambda font: rank.get(font[0], len(rank)))  # stable: the rest as found
    return tuple(fonts)


def covers(path: str, text: str) -> bool:
    """Whether the font file at `path` has a glyph for each character of `text`."""
    return {ord(c) for c in text if not c.isspace()} <= _charmap(path)


def font_for(text: str) -> str | None:
    """The family of the first installed font that draws every character of `text`; None
    when none does."""
    for family, path in _installed():
        if covers(path, text):
            return family
    return None


def ascii_form(text: str) -> str:
    """`text` with each character outside ASCII as its escape (`北` -> `\\u5317`): readable,
    and drawn by any font."""
    return text.encode("ascii", "backslashreplace").decode("ascii")
