"""Sentence boundaries with exact document offsets: ``document[span.char_start:span.char_end]`` is the
sentence, for every sentence of every document. Shared by the predictor (inference) and the text reader of
masked-LM pretraining (training), so both cut text the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pysbd

# Blank lines separate paragraphs in news text. Splitting on them first keeps pysbd (whose regexes are
# super-linear on very long inputs) working on paragraph-sized strings and never lets a sentence run
# across a paragraph break (a headline and the first sentence of the body, say).
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
# pysbd's time grows faster than linearly with its input (200k characters of short sentences take ~3 s,
# 2M would take minutes), so a paragraph longer than this is cut into pieces first: at its last line break,
# else after its last sentence-final punctuation, else at its last whitespace in the second half of the
# piece. Only such giant paragraphs (scraped text without blank lines) see a cut pysbd did not choose.
MAX_SEGMENT_CHARS = 10_000
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*\s")


@dataclass(frozen=True)
class SentenceSpan:
    """A sentence as ``document[char_start:char_end]`` (stripped of surrounding whitespace)."""

    char_start: int
    char_end: int


class SentenceSplitter:
    """pysbd sentence boundaries, with offsets re-derived by searching the original text.

    pysbd's ``char_span`` offsets drift on runs of whitespace and some punctuation, so only the sentence
    *strings* are trusted: each one is located in the document searching forward from the end of the
    previous sentence. Whatever cannot be located (pysbd rewrote it) is folded into the next sentence,
    so no non-whitespace character of the document is ever dropped.
    """

    def __init__(self, language: str = "en"):
        self._segmenter = pysbd.Segmenter(language=language, clean=False, char_span=False)

    def split(self, document: str) -> list[SentenceSpan]:
        spans: list[SentenceSpan] = []
        start = 0
        for match in _PARAGRAPH_BREAK.finditer(document):
            spans += self._split_long_paragraph(document, start, match.start())
            start = match.end()
        spans += self._split_long_paragraph(document, start, len(document))
        return spans

    def _split_long_paragraph(self, document: str, start: int, end: int) -> list[SentenceSpan]:
        spans: list[SentenceSpan] = []
        while end - start > MAX_SEGMENT_CHARS:
            cut = _cut_point(document, start + MAX_SEGMENT_CHARS // 2, start + MAX_SEGMENT_CHARS)
            spans += self._split_paragraph(document, start, cut)
            start = cut
        return spans + self._split_paragraph(document, start, end)

    def _split_paragraph(self, document: str, start: int, end: int) -> list[SentenceSpan]:
        paragraph = document[start:end]
        if not paragraph.strip():
            return []
        spans: list[SentenceSpan] = []
        cursor = 0  # in paragraph coordinates: everything before it belongs to an emitted sentence
        pending = None  # start of text pysbd returned in a form that could not be located
        for sentence in self._segmenter.segment(paragraph):
            stripped = sentence.strip()
            if not stripped:
                continue
            found = paragraph.find(stripped, cursor)
            if found < 0:
                pending = cursor if pending is None else pending
                continue
            first = pending if pending is not None else found
            spans.append(_stripped_span(paragraph, first, found + len(stripped), start))
            cursor = found + len(stripped)
            pending = None
        if paragraph[cursor:].strip():
            spans.append(_stripped_span(paragraph, cursor, len(paragraph), start))
        return [span for span in spans if span.char_end > span.char_start]


def _cut_point(document: str, low: int, high: int) -> int:
    window = document[low:high]
    newline = window.rfind("\n")
    if newline >= 0:
        return low + newline + 1
    ends = [match.end() for match in _SENTENCE_END.finditer(window)]
    if ends:
        return low + ends[-1]
    spaces = [match.end() for match in re.finditer(r"\s", window)]
    return low + spaces[-1] if spaces else high


def _stripped_span(paragraph: str, first: int, last: int, offset: int) -> SentenceSpan:
    piece = paragraph[first:last]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    return SentenceSpan(offset + first + lead, offset + last - trail)
