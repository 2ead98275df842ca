"""Text keys for recognising the same sentence in differently typeset files.

The CAMEO class file and the CAMEO actor file hold mostly the same sentences, but one is natural text
and the other is tokenised (``government's`` vs ``government 's``), and their quotes, apostrophes,
dashes and accents do not always agree (``ʼ`` U+02BC vs ``’`` U+2019 vs ``'``, ``Erdoğan`` vs
``Erdogan``, U+202F narrow no-break spaces, U+202A direction marks). Two keys are derived here:

- :func:`match_key`: compatibility-decomposed (NFKD), accents dropped, quotes/apostrophes/dashes
  folded to ASCII, case folded, whitespace and invisible format characters removed. Used to pair
  sentences across files and to collapse duplicate sentences.
- :func:`near_duplicate_key`: :func:`match_key` without punctuation. Used to keep near-duplicates
  on one side of the dev split and to detect leakage between splits.

:class:`NormalisedText` keeps, for every character of the match key, the index of the original
character it came from. Two texts with the same key therefore align character by character, which
is how actor spans found in the tokenised file are projected onto the natural text.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache

# Typographic variants seen in news text, folded to the ASCII form tokenisers tend to produce.
_FOLDS = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4\u02bc\u02bb\u0060", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
}


@lru_cache(maxsize=4096)
def _normalise_char(char: str) -> str:
    """The (possibly empty, possibly multi-character) normalised form of one character."""
    if char.isspace() or unicodedata.category(char) == "Cf":
        return ""
    decomposed = unicodedata.normalize("NFKD", char)
    kept = []
    for part in decomposed:
        if unicodedata.category(part) == "Mn":  # combining accent: Erdoğan == Erdogan
            continue
        part = _FOLDS.get(part, part)
        kept.append(part.casefold())
    return "".join(kept).replace(" ", "")


@dataclass(frozen=True)
class NormalisedText:
    """The match key of a text plus, per key character, the index of its source character."""

    key: str
    origins: tuple[int, ...]

    @classmethod
    def of(cls, text: str) -> "NormalisedText":
        chars: list[str] = []
        origins: list[int] = []
        for index, char in enumerate(text):
            for part in _normalise_char(char):
                chars.append(part)
                origins.append(index)
        return cls("".join(chars), tuple(origins))

    def key_range(self, char_start: int, char_end: int) -> tuple[int, int]:
        """The key positions ``[lo, hi)`` produced by source characters ``[char_start, char_end)``."""
        return bisect_left(self.origins, char_start), bisect_left(self.origins, char_end)

    def source_range(self, key_lo: int, key_hi: int) -> tuple[int, int]:
        """The source characters ``[start, end)`` covering key positions ``[key_lo, key_hi)``."""
        return self.origins[key_lo], self.origins[key_hi - 1] + 1


def match_key(text: str) -> str:
    return "".join(_normalise_char(char) for char in text)


def near_duplicate_key(text: str) -> str:
    """:func:`match_key` with punctuation and symbols removed as well."""
    return "".join(char for char in match_key(text) if unicodedata.category(char)[0] in "LN")
