"""The sentence splitter's faster pysbd (conflict_events/sentences.py, FastSegmenter) returns what pysbd
returns, string for string, and the splitter's spans stay what they were with stock pysbd: on texts built
from what pysbd reasons about (abbreviations in every case, periods, lists, ellipses, quotes, Unicode
whitespace and case folding) and, where the shared data is present, on every IndiaPoliceEvents article."""

from __future__ import annotations

import csv
import re
import sys
import threading

import pysbd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pysbd.abbreviation_replacer import AbbreviationReplacer
from pysbd.lang.english import English
from pysbd.utils import Text

from conflict_events import sentences
from conflict_events.sentences import FastSegmenter, SentenceSplitter
from conftest import CONFLIBERT

MANY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces pysbd has rules for: abbreviations (prepositive, before numbers, with dots; as written in any case,
# and with characters re.IGNORECASE folds onto ASCII letters: long s, the Kelvin sign, dotted and dotless i),
# list markers, ellipses, quotes and brackets, sentence starters after U.S., whitespace of every kind.
PIECES = st.sampled_from(
    [
        "Mr", "mr", "MR", "mR", "Dr", "DR", "Gen", "gen", "Capt", "Rs", "rs", "St", "st", "\u017ft", "Ky",
        "\u212ay", "no", "No", "NO", "p", "pp", "art", "Fig", "vs", "v", "e.g", "E.G", "i.e", "u.s", "U.S",
        "U.S.A", "ph.d", "Ph.D", "d.phil", "Dr.Phil", "Jan", "a.m", "P.M", "Co", "KG", "Inc", "\u0130s", "\u0131d",
        ".", ". ", "..", "...", ". . .", "?", "!", "?!", "!!!", ":", ";", ",", "-", "\u2014",
        " ", "  ", "\n", "\r", "\r\n", "\n\n", "\t", "\u00a0", "\u2009", "\u3000", "\u2028",
        "1", "2", "12", "3.5", "1.", "2.", "1)", "2)", "(a)", "(b)", "a.", "b.", "c)", "ii.", "iii)", "(iv)",
        '"', "'", "\u201c", "\u201d", "\u2018", "\u2019", "(", ")", "[", "]", "{", "}", "'s",
        "The", "police", "fired", "He", "I", "However", "A", "In", "they", "rebels", "attacked", "Delhi", "first", "sky", "did", "kitts",
        "\u00df", "\u00e9", "\u4e2d\u56fd\u3002", "\U0001f600", "pdf", "jpg", "\u00b0",
    ]
)
TEXTS = st.lists(PIECES, max_size=60).map("".join)
# Lines as pysbd's abbreviation step sees them (no line feeds: the processor made them carriage returns).
LINES = st.lists(PIECES.filter(lambda piece: "\n" not in piece), max_size=40).map("".join)

STOCK = pysbd.Segmenter(language="en", clean=False, char_span=False)


def stock_splitter() -> SentenceSplitter:
    """The splitter as it was before FastSegmenter: the same code around stock pysbd."""
    splitter = SentenceSplitter()
    splitter._segmenter = pysbd.Segmenter(language="en", clean=False, char_span=False)
    return splitter


def spans_of(splitter: SentenceSplitter, text: str) -> list[tuple[int, int, str]]:
    return [(s.char_start, s.char_end, text[s.char_start : s.char_end]) for s in splitter.split(text)]


AWKWARD = [
    "",
    "   ",
    "Mr. Smith met Dr. Jones. They talked.",
    "MR. SMITH MET DR. JONES at 5 p.m. Friday. No. 5 was there, see p. 3 and pp. 4-5.",
    "Rs. 50,000 was seized. rs. 20 more. Gen. Singh and Capt. Rao arrived. St. Stephen's.",
    "The U.S. Army arrived. The U.S. He left. E.g. this. i.e. that. Ph.D. holders. d.phil.",
    "\u017ft. Kitts and \u212ay. Derby? \u0130s. \u0131d. Fine.",
    # Folded by re.IGNORECASE onto an abbreviation that the text holds elsewhere (first: st, sky: ky, did: id).
    "The first \u017ft. kitts visit. A sky \u212ay. derby. He did \u0130d. it and \u0131d. then.",
    "Yes. Yes. Yes. Yes.",
    "1. First item 2. Second item 3. Third item",
    "a. one b. two c. three. (i) first (ii) second (iii) third.",
    "He said \"stop.\" Then left... And then . . . nothing. Really?! Wow!!!",
    "Headline\n\nBody. Line\r\nbreaks\rhere.\u2028Next.\u3000Ideographic\u00a0space.",
    "Police fired tear gas (at the crowd. of 500) on Jan. 5. The Co. KG agreed.",
    "'Quoted.' \u2018Curly.\u2019 \u201cDouble.\u201d [Bracketed. Text.] {Braced. Text.}",
    "Temperature 40\u00b0. 5 people. file. pdf here. 3.5 million.",
    "word " * 50 + "end.",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_the_fast_segmenter_returns_what_pysbd_returns_on_awkward_text(text):
    assert FastSegmenter(language="en", clean=False, char_span=False).segment(text) == STOCK.segment(text)


@MANY
@given(TEXTS)
def test_the_fast_segmenter_returns_what_pysbd_returns(text):
    assert FastSegmenter(language="en", clean=False, char_span=False).segment(text) == STOCK.segment(text)


@MANY
@given(TEXTS)
def test_the_splitter_gives_the_spans_it_gave_with_stock_pysbd(text):
    assert spans_of(SentenceSplitter(), text) == spans_of(stock_splitter(), text)


@MANY
@given(st.lists(st.sampled_from(["", "a", "a.", "aa", " ", "Mr.", "b c", "\u3000", "x\u00a0y"]), max_size=8), TEXTS)
def test_sentences_are_found_back_in_the_text_as_pysbd_finds_them(found, text):
    # Sentences pysbd did not take from the text (rewritten, repeated, empty) included.
    STOCK.original_text = text
    expected = [span.sent for span in STOCK.sentences_with_char_spans(found)]
    assert sentences._matched_sentences(found, text) == expected


@MANY
@given(LINES)
def test_the_abbreviation_step_changes_a_line_as_pysbds_does(line):
    assert sentences._CompiledAbbreviationReplacer(line, English).search_for_abbreviations_in_string(line) == (
        English.AbbreviationReplacer(line, English).search_for_abbreviations_in_string(line)
    )
    assert sentences._CompiledAbbreviationReplacer(line, English).replace() == English.AbbreviationReplacer(line, English).replace()


def test_the_abbreviation_step_is_pysbd_0_3_4s():
    """The replacer copies three pysbd methods: a pysbd that changed them needs the copy looked at again."""
    assert pysbd.__version__ == "0.3.4"
    assert issubclass(sentences._CompiledAbbreviationReplacer, AbbreviationReplacer)


@MANY
@given(TEXTS, st.sampled_from(["SubSymbolsRules", "ReinsertEllipsisRules", "EllipsisRules", "Numbers", "AmPmRules"]))
def test_rules_applied_as_literals_give_what_pysbd_gives(text, group):
    rules = getattr(English, group).All
    assert sentences._applied(text, *rules) == Text(text).apply(*rules)


def test_only_literal_rules_with_plain_replacements_are_done_as_str_replace():
    assert sentences._literal("&\u1430&", "!") == "&\u1430&"
    assert sentences._literal("\u222f", ".") == "\u222f"
    assert sentences._literal(r"\.\.\.", "...") is None
    assert sentences._literal("a.c", "x") is None
    assert sentences._literal(r"\n", "x") is None
    assert sentences._literal("ab", r"\1") is None


def test_re_whitespace_is_str_isspace():
    """_matched_sentences reads pysbd's \\s* with str.isspace: the same characters, over all of Unicode."""
    pattern = re.compile(r"\s")
    assert all(bool(pattern.match(chr(code))) == chr(code).isspace() for code in range(sys.maxunicode + 1))


def test_concurrent_splits_do_not_mix_their_texts():
    """pysbd keeps the text being split on the segmenter; FastSegmenter does not, so one shared splitter
    (a served model's) gives each caller its own text's sentences."""
    splitter = SentenceSplitter()
    texts = [f"Document {n} starts here. It has Mr. {n} in it. It ends now." * 3 for n in range(8)]
    expected = [spans_of(splitter, text) for text in texts]
    results: dict[int, list] = {}

    def work(index: int) -> None:
        for _ in range(30):
            got = spans_of(splitter, texts[index])
            if got != expected[index]:
                results[index] = got
                return
        results.setdefault(index, expected[index])

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[index] for index in range(len(texts))] == expected


@pytest.mark.skipif(not (CONFLIBERT / "IndiaPoliceEvents_docs").is_dir(), reason=f"IndiaPoliceEvents not found under {CONFLIBERT}")
@pytest.mark.parametrize("name", ["dev.tsv"])
def test_every_india_police_events_article_splits_as_with_stock_pysbd(name):
    csv.field_size_limit(sys.maxsize)
    with (CONFLIBERT / "IndiaPoliceEvents_docs" / name).open(encoding="utf-8", newline="") as handle:
        articles = [row[0] for row in csv.reader(handle, delimiter="\t") if row and row[0].strip()]
    fast, stock = SentenceSplitter(), stock_splitter()
    assert len(articles) > 100
    assert [spans_of(fast, article) for article in articles] == [spans_of(stock, article) for article in articles]
