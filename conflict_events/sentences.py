"""Sentence boundaries with exact document offsets: ``document[span.char_start:span.char_end]`` is the
sentence, for every sentence of every document. Shared by the predictor (inference) and the text reader of
masked-LM pretraining (training), so both cut text the same way.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pysbd
from pysbd.abbreviation_replacer import AbbreviationReplacer
from pysbd.lang.english import English
from pysbd.processor import Processor
from pysbd.utils import Rule

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
    so no non-whitespace character of the document is ever dropped. pysbd runs as :class:`FastSegmenter`
    (below): the same sentences as ``pysbd.Segmenter``, in about a fifth of the time.
    """

    def __init__(self, language: str = "en"):
        self._segmenter = FastSegmenter(language=language, clean=False, char_span=False)

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


# --- pysbd, faster, same output --------------------------------------------------------------------
# Profiled on the 1,070 IndiaPoliceEvents articles (docs/INFERENCE.md, "Producer, progress and where the
# time goes"), most of pysbd's time was compiling regular expressions, not matching them: it builds one
# pattern per sentence (to find it back in the text) and several per abbreviation met, more than the 512
# that `re` caches, so the cache (first in, first out) kept dropping patterns it needed again, its own
# fixed rules included. FastSegmenter returns what pysbd.Segmenter returns, string for string
# (tests/test_sentences.py compares them), with those two costs taken out.


class FastSegmenter(pysbd.Segmenter):
    """``pysbd.Segmenter`` for ``clean=False`` without its per-sentence regular expressions, and, for
    English, with the abbreviation patterns compiled once. Unlike pysbd's, :meth:`segment` keeps no state
    on the instance (pysbd stores the text being split on it), so concurrent calls do not mix."""

    def segment(self, text: str) -> list[str]:
        if self.clean or self.doc_type == "pdf" or self.char_span:
            return super().segment(text)
        if not text:
            return []
        return _matched_sentences(self.processor(text).process(), text)

    def processor(self, text: str) -> Processor:
        if self.language_module is English and not hasattr(English, "Processor"):
            return _EnglishProcessor(text, self.language_module, char_span=self.char_span)
        return super().processor(text)


def _matched_sentences(sentences: list[str], text: str) -> list[str]:
    r"""What ``Segmenter.sentences_with_char_spans`` gives as strings: for each sentence, its first
    occurrence in ``text`` (with the whitespace after it) that ends after the previous one's end, found by
    ``re.finditer(re.escape(sentence) + r"\s*", text)``; a sentence with none is dropped. Literal search
    instead: the leftmost match of a literal followed by ``\s*`` is the literal's next occurrence, and
    finditer resumes at the end of a (non-empty) match. ``re``'s ``\s`` is ``str.isspace``."""
    found: list[str] = []
    previous_end = 0
    for sentence in sentences:
        if not sentence:  # an empty pattern matches everywhere: leave that case to re, as pysbd does
            match = next((m for m in re.finditer(r"\s*", text) if m.end() > previous_end), None)
            if match is not None:
                found.append(match.group())
                previous_end = match.end()
            continue
        start = text.find(sentence)
        while start >= 0:
            end = start + len(sentence)
            while end < len(text) and text[end].isspace():
                end += 1
            if end > previous_end:
                found.append(text[start:end])
                previous_end = end
                break
            start = text.find(sentence, end)
    return found


class _EnglishProcessor(Processor):
    """pysbd 0.3.4's processor with English's abbreviation replacer below, and the per-sentence rules of
    ``split_into_segments`` and ``post_process_segments`` (copied line for line) applied by
    :func:`_applied`: most of them replace one literal symbol, which most sentences do not hold."""

    def abbreviations_replacer(self) -> AbbreviationReplacer:
        return _CompiledAbbreviationReplacer(self.text, self.lang)

    def split_into_segments(self) -> list[str]:
        self.check_for_parens_between_quotes()
        sents = self.text.split("\r")
        # remove empty and none values
        sents = self.rm_none_flatten(sents)
        sents = [_applied(s, self.lang.SingleNewLineRule, *self.lang.EllipsisRules.All) for s in sents]
        sents = [self.check_for_punctuation(s) for s in sents]
        # flatten list of list of sentences
        sents = self.rm_none_flatten(sents)
        postprocessed_sents = []
        for sent in sents:
            sent = _applied(sent, *self.lang.SubSymbolsRules.All)
            post_process_sent = self.post_process_segments(sent)
            if post_process_sent and isinstance(post_process_sent, str):
                postprocessed_sents.append(post_process_sent)
            elif isinstance(post_process_sent, list):
                for pps in post_process_sent:
                    postprocessed_sents.append(pps)
        postprocessed_sents = [_applied(ns, self.lang.SubSingleQuoteRule) for ns in postprocessed_sents]
        return postprocessed_sents

    def post_process_segments(self, txt: str) -> str | list[str]:
        if len(txt) > 2 and re.search(r"\A[a-zA-Z]*\Z", txt):
            return txt
        txt = _applied(txt, *self.lang.ReinsertEllipsisRules.All)
        if re.search(self.lang.QUOTATION_AT_END_OF_SENTENCE_REGEX, txt):
            txt = re.split(self.lang.SPLIT_SPACE_QUOTATION_AT_END_OF_SENTENCE_REGEX, txt)
            return txt
        else:
            txt = txt.replace("\n", "")
            return txt.strip()


# Characters that make a pattern more than its literal text (besides flags, which rules do not have).
_REGEX_SYNTAX = frozenset("\\.^$*+?{}[]|()")


def _applied(text: str, *rules: Rule) -> str:
    """``pysbd.utils.Text(text).apply(*rules)``: each rule's ``re.sub`` in turn, with a rule whose pattern
    is a literal and whose replacement has no escapes done as ``str.replace`` (the same leftmost,
    non-overlapping matches), or skipped when the literal is not there."""
    text = str(text)
    for rule in rules:
        literal = _literal(rule.pattern, rule.replacement)
        if literal is None:
            text = re.sub(rule.pattern, rule.replacement, text)
        elif literal in text:
            text = text.replace(literal, rule.replacement)
    return text


@functools.lru_cache(maxsize=None)
def _literal(pattern: str, replacement: str) -> str | None:
    """``pattern`` when it matches only itself and ``replacement`` is taken as it is, else None."""
    if not pattern or _REGEX_SYNTAX.intersection(pattern) or "\\" in replacement:
        return None
    return pattern


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """``re.compile`` with a cache of its own, large enough for every pattern pysbd derives from its
    abbreviations and the case they are written in (a bounded set)."""
    return re.compile(pattern, flags)


class _CompiledAbbreviationReplacer(English.AbbreviationReplacer):
    """English's abbreviation replacer, line for line pysbd 0.3.4's ``search_for_abbreviations_in_string``,
    ``scan_for_replacements`` and the ``replace_*_abbr`` functions, with each pattern compiled once
    (``re.sub(p, r, s, flags=f)`` is ``re.compile(p, f).sub(r, s)``)."""

    def search_for_abbreviations_in_string(self, text: str) -> str:
        lowered = text.lower()
        # What the loop does for an abbreviation not before any period of the line is a no-op (module
        # comment above _periods_follow): skipped, most of pysbd's matching time.
        before_periods = _periods_follow(text, _abbreviations_by_length(tuple(self.lang.Abbreviation.ABBREVIATIONS)))
        for abbr in self.lang.Abbreviation.ABBREVIATIONS:
            stripped = abbr.strip()
            if stripped not in lowered:
                continue
            if stripped not in before_periods:
                continue
            abbrev_match = _compiled(r"(?:^|\s|\r|\n){}".format(stripped), re.IGNORECASE).findall(text)
            if not abbrev_match:
                continue
            next_word_start = r"(?<={" + str(re.escape(stripped)) + "} ).{1}"
            char_array = _compiled(next_word_start).findall(text)
            for ind, match in enumerate(abbrev_match):
                text = self.scan_for_replacements(text, match, ind, char_array)
        return text

    def scan_for_replacements(self, txt: str, am: str, ind: int, char_array: list[str]) -> str:
        try:
            char = char_array[ind]
        except IndexError:
            char = ""
        prepositive = self.lang.Abbreviation.PREPOSITIVE_ABBREVIATIONS
        number_abbr = self.lang.Abbreviation.NUMBER_ABBREVIATIONS
        upper = str(char).isupper()
        if not upper or am.strip().lower() in prepositive:
            if am.strip().lower() in prepositive:
                txt = _substituted(r"(?<=\s{abbr})\.(?=(\s|:\d+))".format(abbr=am.strip()), txt)
            elif am.strip().lower() in number_abbr:
                txt = _substituted(r"(?<=\s{abbr})\.(?=(\s\d|\s+\())".format(abbr=am.strip()), txt)
            else:
                txt = self.replace_period_of_abbr(txt, am)
        return txt

    def replace_period_of_abbr(self, txt: str, abbr: str) -> str:
        pattern = r"(?<=\s{abbr})\.(?=((\.|\:|-|\?|,)|(\s([a-z]|I\s|I'm|I'll|\d|\())))".format(
            abbr=re.escape(abbr.strip())
        )
        return _substituted(pattern, txt)


def _substituted(pattern: str, txt: str) -> str:
    r"""The ``replace_*_abbr`` step: ``∯`` for each period ``pattern`` matches, with a space prepended (so
    that ``\s`` in its look-behind also matches at the start) and removed again."""
    return _compiled(pattern).sub("∯", " " + txt)[1:]


# Why an abbreviation that no period of the line follows can be skipped: for each match `am` of the
# abbreviation, scan_for_replacements changes the line only by `_substituted`, which turns into `∯` a
# period preceded by whitespace (or the line's start: the prepended space) and by `am.strip()` written as
# it is in the text (case-sensitive, no flags; a literal: re.escape'd, or letters only for the prepositive
# and number abbreviations, which have no dots). `am.strip()` is a match of the abbreviation under
# re.IGNORECASE, one character per character of it (a letter, or any character but a line feed for its
# dots). So a change needs a period whose preceding len(abbreviation) characters match the abbreviation
# that way, after whitespace or the line's start. Replacements only turn periods into `∯`, so periods of
# the line as given are a superset of those of the line as it is when the abbreviation's turn comes.


def _periods_follow(line: str, by_length: dict[int, tuple[frozenset[str], tuple[str, ...]]]) -> set[str]:
    """The abbreviations (of ``by_length``: per length, those without dots and those with) that a period of
    ``line`` may follow in the sense of the comment above; a superset where the text is not ASCII."""
    found: set[str] = set()
    period = line.find(".")
    while period >= 0:
        for length, (plain, dotted) in by_length.items():
            first = period - length
            if first < 0 or (first > 0 and not line[first - 1].isspace()):
                continue
            window = line[first:period]
            if not window.isascii():  # re's case folding goes beyond str.lower here (ſ is s, K is k): keep all
                found.update(plain)
                found.update(dotted)
                continue
            window = window.lower()  # for ASCII, what re.IGNORECASE matches
            if window in plain:
                found.add(window)
            found.update(name for name in dotted if _dotted_match(name, window))
        period = line.find(".", period + 1)
    return found


def _dotted_match(abbreviation: str, window: str) -> bool:
    """Whether the lowercased ASCII ``window`` matches ``abbreviation`` as a pattern: its dots match any
    character but a line feed."""
    return all(a == c or (a == "." and c != "\n") for a, c in zip(abbreviation, window))


@functools.lru_cache(maxsize=None)
def _abbreviations_by_length(abbreviations: tuple[str, ...]) -> dict[int, tuple[frozenset[str], tuple[str, ...]]]:
    """A language's abbreviations (stripped) by length: (those without dots, those with)."""
    stripped = [abbreviation.strip() for abbreviation in abbreviations]
    return {
        length: (
            frozenset(a for a in stripped if len(a) == length and "." not in a),
            tuple(a for a in stripped if len(a) == length and "." in a),
        )
        for length in sorted({len(a) for a in stripped})
    }
