"""Words in free text as the gazetteer and the region index compare them: accent-free and case-folded."""

from __future__ import annotations

import re
import unicodedata

WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*", re.UNICODE)
"""A word: letters, possibly joined by an apostrophe or a hyphen (no digits)."""


def fold(text: str) -> str:
    """Accent-free, case-folded text."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
