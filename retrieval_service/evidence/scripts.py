"""Writing-script detection from Unicode character names (stdlib ``unicodedata``)."""

from __future__ import annotations

import unicodedata
from collections import Counter

# first word(s) of a Unicode character name -> script name
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("LATIN", "Latin"),
    ("CYRILLIC", "Cyrillic"),
    ("GREEK", "Greek"),
    ("CJK", "Han (CJK)"),
    ("ARABIC", "Arabic"),
    ("HEBREW", "Hebrew"),
    ("DEVANAGARI", "Devanagari"),
    ("THAI", "Thai"),
    ("HANGUL", "Hangul"),
    ("HIRAGANA", "Kana"),
    ("KATAKANA", "Kana"),
    ("BENGALI", "Bengali"),
    ("TAMIL", "Tamil"),
    ("TELUGU", "Telugu"),
    ("KANNADA", "Kannada"),
    ("MALAYALAM", "Malayalam"),
    ("GUJARATI", "Gujarati"),
    ("GURMUKHI", "Gurmukhi"),
    ("SINHALA", "Sinhala"),
    ("GEORGIAN", "Georgian"),
    ("ARMENIAN", "Armenian"),
    ("ETHIOPIC", "Ethiopic"),
    ("KHMER", "Khmer"),
    ("LAO", "Lao"),
    ("MYANMAR", "Myanmar"),
    ("TIBETAN", "Tibetan"),
    ("MONGOLIAN", "Mongolian"),
    ("THAANA", "Thaana"),
)

SCRIPT_REGIONS: dict[str, str] = {
    "Cyrillic": "Russia, Ukraine, Belarus, Bulgaria, Serbia, North Macedonia, Kazakhstan, Kyrgyzstan, Mongolia",
    "Greek": "Greece, Cyprus",
    "Han (CJK)": "China, Taiwan, Hong Kong, Macau, Singapore, Japan (with Kana)",
    "Kana": "Japan",
    "Hangul": "South Korea, North Korea",
    "Arabic": "Arab world, Iran (Persian), Pakistan (Urdu), Afghanistan",
    "Hebrew": "Israel",
    "Devanagari": "India (north), Nepal",
    "Thai": "Thailand",
    "Bengali": "Bangladesh, India (West Bengal)",
    "Tamil": "India (Tamil Nadu), Sri Lanka, Singapore",
    "Telugu": "India (Andhra Pradesh, Telangana)",
    "Kannada": "India (Karnataka)",
    "Malayalam": "India (Kerala)",
    "Gujarati": "India (Gujarat)",
    "Gurmukhi": "India (Punjab)",
    "Sinhala": "Sri Lanka",
    "Georgian": "Georgia",
    "Armenian": "Armenia",
    "Ethiopic": "Ethiopia, Eritrea",
    "Khmer": "Cambodia",
    "Lao": "Laos",
    "Myanmar": "Myanmar",
    "Tibetan": "Tibet (China), Bhutan",
    "Mongolian": "Inner Mongolia (China)",
    "Thaana": "Maldives",
}


def script_of(char: str) -> str | None:
    """The script of one letter, or None for non-letters and unknown scripts."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    for prefix, script in _PREFIXES:
        if name.startswith(prefix):
            return script
    return None


def detect_scripts(text: str, *, min_share: float = 0.05) -> list[str]:
    """Scripts used in ``text``, most letters first; scripts under ``min_share`` of letters are dropped."""
    counts = Counter(s for s in map(script_of, text) if s)
    total = sum(counts.values())
    if not total:
        return []
    return [s for s, n in counts.most_common() if n / total >= min_share]
