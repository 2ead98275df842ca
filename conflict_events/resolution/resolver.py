"""Actor resolution and event location over one document, in one pass over its words.

:meth:`Resolver.analyse` finds every name the gazetteer knows in the document (longest match first), decides
which place each place name is, and derives the document's context: the countries it names, and its
dominant country. :meth:`Resolver.resolve_actor` and :meth:`Resolver.sentence_locations` read that
analysis; :meth:`Resolver.resolve_document` does all three for the predictor and the evaluation.

Rules (docs/INFERENCE.md, "Resolution", states them for users):

Places. A name is a place mention unless it is also a demonym or an organisation, is listed in
``not_places``, is part of a longer capitalised name ("Derna Mujahideen Shura Council", "Abdulkarim
Sabra": a capitalised word joined to it by one space that is not a known name, a function word of a
headline or a direction), or is an affiliation ("Moscow-backed", "pro-Russian": these say who backs an
actor, not where anything is). Which place: a candidate in a country the document names unambiguously
elsewhere first, then countries before cities before regions, then the larger population; "Paris, Texas"
takes the candidate in Texas; a city of fewer than ``min_city_population`` people (1,000,000 when it is
named by a GeoNames alternate name) is a place only where the document names its country some other way.

Event country. The first place of the sentence introduced as a location ("in", "near", "outside", ...,
"in the central coastal city of"); else the one country of the sentence's places; else the document's
dominant country if the sentence names it; else null when the sentence names several other countries;
a sentence that names no place takes the dominant country.

Actors. The span first: an organisation in it (its sector, its `org` for IGOs and NGOs, its country
where the table states one, null for international bodies), else the first country the span names
(demonym, country, city, region); then the countries named in the sentence outside every actor span
(the most often named, the first on a tie); then the document's dominant country. Sector: an
organisation's; else the span's sector words, where a strong word of the head (the words before the
first "of", "from", "in", "loyal", "to", "who", ..., or comma) beats a weak one, and the head beats the
rest; else GOV for a span that only names a state (a country, a capital, a demonym); else UNK.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Sequence

from conflict_events.records import PlaceMention
from conflict_events.resolution.codebook import ORG_SECTORS, UNKNOWN_SECTOR
from conflict_events.resolution.gazetteer import KIND_RANK, Entry, Gazetteer, Place, normalise, prior, stands_alone, tokens

# "Moscow-backed", "U.S.-trained", "pro-Russian", "anti-government": affiliation, not nationality or location.
_AFFILIATION_AFTER = re.compile(
    r"-(?:backed|supported|sponsored|funded|armed|trained|aligned|allied|friendly|leaning|inspired|installed|appointed)\b"
)
_AFFILIATION_BEFORE = re.compile(r"(?:\b|^)(?:pro|anti|non)-$", re.IGNORECASE)
# "Houthi-run media", "Hamas-led government", "rebel-held town": an organisation in a compound modifier
# gives its country but not the sector (the head noun does).
_MODIFIER_AFTER = re.compile(r"-(?:run|led|controlled|held|owned|dominated|ruled|based|linked|affiliated)\b")
# Capitalised words that may stand next to a place name without making it part of another name.
_BEFORE_OK = frozenset(
    "In At Near From To Of And The For On Over Into Across Outside Inside Around Against With After Before "
    "Between Toward Towards Through Throughout Within Via North South East West Northern Southern Eastern Western "
    "Central Upper Lower Greater Mid Northeast Northwest Southeast Southwest Northeastern Northwestern "
    "Southeastern Southwestern".split()
)
_AFTER_OK = frozenset(
    "On In At And Or But The Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March "
    "April May June July August September October November December".split()
)
# A place introduced as where something happened: "in", "near", ... then only these words before the name.
_LOCATIVE = re.compile(
    r"(?:^|\W)(?:in|at|near|outside|inside|across|into|around|throughout|within|toward|towards|off|"
    r"(?:north|south|east|west|northeast|northwest|southeast|southwest) of|on the outskirts of|off the coast of)"
    r"((?:\s+[\w’'-]+)*?)\s+$"
)
_LOCATIVE_FILLERS = frozenset(
    "the a an of city town village region province district capital port state county area areas outskirts "
    "northern southern eastern western central north south east west northeastern northwestern southeastern "
    "southwestern coastal border neighbouring neighboring nearby besieged rebel-held restive embattled "
    "mountainous remote disputed occupied breakaway frontline front-line key strategic main eastern-most "
    "suburbs suburb of".split()
)
# The head of an actor span ends at the first of these (its modifiers come after).
_HEAD_END = re.compile(
    r"\s(?:of|from|in|at|on|loyal|to|who|which|that|with|for|near|under|against|including|whose|based|led|"
    r"backed|linked|allied|belonging|inside|outside|across)\s|[,;:(]"
)
_DETERMINERS = frozenset("the a an its their his her".split())


@dataclass(frozen=True)
class ActorResolution:
    country: str | None
    sector: str
    org: str | None
    resolved_by: str | None  # span, sentence, document; None: nothing decided the country


@dataclass(frozen=True)
class NameMatch:
    """One known name found in the document."""

    start: int
    end: int
    entry: Entry
    affiliation: bool
    place: Place | None = None  # the chosen place (any place name, a mention or not)
    mention: bool = False  # a place mention of the record (see the module's rules)
    surname: bool = False  # a place name used in a person's name ("Abdulkarim Sabra", "Emilio Santos")
    modifier: bool = False  # the first part of a compound modifier ("Houthi-run")

    @property
    def country(self) -> str | None:
        """The country this name points to: its place's, a demonym's, or an organisation's stated one."""
        if self.entry.organisation is not None:
            return self.entry.organisation.country
        if self.entry.demonym is not None:
            return self.entry.demonym
        return self.place.country if self.place is not None and not self.surname else None


@dataclass
class DocumentAnalysis:
    text: str
    matches: list[NameMatch]
    starts: list[int]  # start of each match, for bisect
    dominant_country: str | None

    def within(self, start: int, end: int) -> list[NameMatch]:
        first = bisect.bisect_left(self.starts, start)
        found = []
        for match in self.matches[first:]:
            if match.start >= end:
                break
            if match.end <= end:
                found.append(match)
        return found


@dataclass(frozen=True)
class SentenceResolution:
    locations: tuple[PlaceMention, ...]
    event_country: str | None
    actors: tuple[ActorResolution, ...]


class Resolver:
    def __init__(self, gazetteer: Gazetteer):
        self.gazetteer = gazetteer

    # --- the document ------------------------------------------------------------------------------
    def analyse(self, text: str, sentences: Sequence[tuple[int, int]] = ()) -> DocumentAnalysis:
        """Every known name of ``text``, places decided with the document's context."""
        lookup = normalise(text)
        words = tokens(lookup)
        word_starts = [w.start() for w in words]
        starts_of_sentences = {bisect.bisect_left(word_starts, start) for start, _ in sentences} | {0}
        raw = self._find(lookup, words)
        # Pass 1: countries the document names unambiguously (big places, demonyms, organisations).
        context: Counter[str] = Counter()
        for _, _, entry, _ in raw:
            if entry.demonym is not None:
                context[entry.demonym] += 1
            elif entry.organisation is not None:
                if entry.organisation.country:
                    context[entry.organisation.country] += 1
            else:
                big = {p.country for p in entry.places if stands_alone(p, self.gazetteer.min_city_population)}
                if len(big) == 1:
                    context[next(iter(big))] += 1
        # Pass 2: each name's place and whether it is a mention.
        matches: list[NameMatch] = []
        surnames: set[str] = set()
        for position, (first, last, entry, affiliation) in enumerate(raw):
            start, end = words[first].start(), words[last].end()
            chosen = None
            if entry.places and entry.place_only:
                chosen = self._choose(entry.places, context, self._qualifier(lookup, raw, position, words))
            longer = self._inside_longer_name(text, words, raw, position, starts_of_sentences) if chosen else None
            if longer == "before":
                surnames.add(text[start:end])
            mention = chosen is not None and not affiliation and longer is None and text[start:end] not in self.gazetteer.not_places
            modifier = bool(_MODIFIER_AFTER.match(lookup, end))
            matches.append(NameMatch(start, end, entry, affiliation, chosen, mention, longer == "before", modifier))
        # A name the document uses after a given name or a title ("Abdulkarim Sabra") is a person's name
        # everywhere in it ("Sabra, the military spokesman, said").
        if surnames:
            matches = [
                replace(m, mention=False, surname=True) if m.place is not None and text[m.start : m.end] in surnames else m
                for m in matches
            ]
        counts: Counter[str] = Counter()
        for match in matches:
            if match.affiliation or match.entry.organisation is not None:
                continue
            if match.entry.demonym is not None or match.mention:
                counts[match.country] += 1
        dominant = None
        if counts:
            top = max(counts.values())
            dominant = next(m.country for m in matches if counts.get(m.country) == top and not m.affiliation)
        return DocumentAnalysis(text, matches, [m.start for m in matches], dominant)

    def _find(self, lookup: str, words: list[re.Match]) -> list[tuple[int, int, Entry, bool]]:
        """Known names, longest first, as (first token, last token, entry, affiliation)."""
        first_tokens, entries = self.gazetteer.first_tokens, self.gazetteer.entries
        found = []
        index, count = 0, len(words)
        lower_first = self.gazetteer.lower_first_tokens
        while index < count:
            word = words[index].group()
            if word[0].islower() and word not in lower_first:  # most words: no name starts with them
                index += 1
                continue
            title = False
            longest = first_tokens.get(word)
            if longest is None and len(word) > 3 and word.isupper():
                longest, title = first_tokens.get(word.title()), True  # datelines: "TBILISI, May 14"
            matched = None
            if longest is not None:
                for n in range(min(longest, count - index), 0, -1):
                    surface = lookup[words[index].start() : words[index + n - 1].end()]
                    entry = entries.get(surface.title() if title else surface)
                    if entry is not None:
                        matched = (index, index + n - 1, entry)
                        break
            if matched is None:
                index += 1
                continue
            first, last, entry = matched
            start, end = words[first].start(), words[last].end()
            affiliation = bool(_AFFILIATION_AFTER.match(lookup, end) or _AFFILIATION_BEFORE.search(lookup[max(0, start - 5) : start]))
            found.append((first, last, entry, affiliation))
            index = last + 1
        return found

    def _qualifier(self, lookup: str, raw, position: int, words) -> Place | None:
        """"Paris, Texas": the region or country right after ", " that qualifies a city."""
        if position + 1 >= len(raw):
            return None
        first, _, entry, _ = raw[position + 1]
        between = lookup[words[raw[position][1]].end() : words[first].start()]
        if between != ", " or not entry.place_only:
            return None
        areas = [p for p in entry.places if p.kind in ("region", "country")]
        return max(areas, key=lambda p: KIND_RANK[p.kind]) if len(areas) == 1 else None

    def _choose(self, places: list[Place], context: Counter, qualifier: Place | None) -> Place | None:
        small = self.gazetteer.min_city_population
        candidates = [p for p in places if context[p.country] or stands_alone(p, small)]
        if qualifier is not None:
            qualified = [
                p for p in places if p.country == qualifier.country and (qualifier.admin1 is None or p.admin1 == qualifier.admin1)
            ]
            candidates = [p for p in qualified if p.kind == "city"] or candidates
        if not candidates:
            return None
        return max(candidates, key=lambda p: (context[p.country] > 0, *prior(p)))

    def _inside_longer_name(self, text: str, words, raw, position: int, sentence_starts: set[int]) -> str | None:
        """``before``: a capitalised word that is no known name precedes it (a given name, a title);
        ``after``: one follows it ("Tbilisi City Hall"); None: neither."""
        first, last, _, _ = raw[position]
        neighbours = {raw[position - 1][1] if position else None, raw[position + 1][0] if position + 1 < len(raw) else None}
        if first > 0 and first not in sentence_starts:
            before = words[first - 1]
            if (
                text[before.end() : words[first].start()] == " "
                and before.group()[:1].isupper()
                and before.group() not in _BEFORE_OK
                and first - 1 not in neighbours
            ):
                return "before"
        if last + 1 < len(words):
            after = words[last + 1]
            if (
                text[words[last].end() : after.start()] == " "
                and after.group()[:1].isupper()
                and after.group() not in _AFTER_OK
                and last + 1 not in neighbours
            ):
                return "after"
        return None

    # --- sentences ---------------------------------------------------------------------------------
    def sentence_locations(self, analysis: DocumentAnalysis, start: int, end: int) -> tuple[tuple[PlaceMention, ...], str | None]:
        """The place mentions of the sentence ``[start, end)`` and its event country."""
        mentions = [m for m in analysis.within(start, end) if m.mention]
        locations = tuple(_place_mention(analysis.text, m) for m in mentions)
        if not mentions:
            return locations, analysis.dominant_country
        text = analysis.text
        for match in mentions:
            found = _LOCATIVE.search(text[max(start, match.start - 60) : match.start])
            if found and all(word.lower() in _LOCATIVE_FILLERS for word in found.group(1).split()):
                return locations, match.place.country
        countries = list(dict.fromkeys(m.place.country for m in mentions))
        if len(countries) == 1:
            return locations, countries[0]
        if analysis.dominant_country in countries:
            return locations, analysis.dominant_country
        return locations, None

    # --- actors ------------------------------------------------------------------------------------
    def resolve_span(
        self,
        analysis: DocumentAnalysis,
        span: tuple[int, int],
        sentence: tuple[int, int] | None = None,
        other_spans: Sequence[tuple[int, int]] = (),
    ) -> ActorResolution:
        """The actor span ``[start, end)`` of the document: span, then sentence (outside ``other_spans`` and
        the span), then the document's dominant country."""
        start, end = span
        inside = [m for m in analysis.within(start, end) if not m.affiliation]
        organisation = next((m.entry.organisation for m in inside if m.entry.organisation is not None and not m.modifier), None)
        country, resolved_by = None, None
        if organisation is not None and organisation.states_country:
            country, resolved_by = organisation.country, "span"
        else:
            # A place counts only as a mention: not "Amara" in "Opposition leader Amara Diallo".
            named = next((m for m in inside if m.country is not None and (m.place is None or m.mention)), None)
            if named is not None:
                country, resolved_by = named.country, "span"
        if resolved_by is None and sentence is not None:
            spans = [span, *other_spans]
            outside = [
                m.country
                for m in analysis.within(*sentence)
                if not m.affiliation
                and m.country is not None
                and (m.mention or m.entry.demonym is not None or m.entry.organisation is not None)
                and not any(s <= m.start and m.end <= e for s, e in spans)
            ]
            if outside:
                counts = Counter(outside)
                top = max(counts.values())
                country, resolved_by = next(c for c in outside if counts[c] == top), "sentence"
        if resolved_by is None and analysis.dominant_country is not None:
            country, resolved_by = analysis.dominant_country, "document"
        if organisation is not None:
            sector = organisation.sector
        else:
            sector = self._sector(analysis.text, start, end, inside)
        org = organisation.name if organisation is not None and organisation.sector in ORG_SECTORS else None
        return ActorResolution(country, sector, org, resolved_by)

    def _sector(self, text: str, start: int, end: int, inside: list[NameMatch]) -> str:
        span = text[start:end]
        cut = _HEAD_END.search(span)
        head_end = start + (cut.start() if cut else len(span))
        found = self._sector_words(text, start, end)
        for in_head in (True, False):
            for strong in (True, False):
                hits = [code for at, code, is_strong in found if (at < head_end) == in_head and is_strong == strong]
                if hits:
                    return hits[-1]
        # A span that only names a state: "Russia", "Kiev", "the Russians".
        content = [w for w in tokens(span) if w.group().lower() not in _DETERMINERS and not w.group() == "s"]
        if content and inside:
            covered = all(any(m.start <= start + w.start() and start + w.end() <= m.end for m in inside) for w in content)
            states = all(
                m.entry.demonym is not None or (m.place is not None and (m.place.kind == "country" or m.place.capital))
                for m in inside
            )
            if covered and states:
                return "GOV"
        return UNKNOWN_SECTOR

    def _sector_words(self, text: str, start: int, end: int) -> list[tuple[int, str, bool]]:
        """(offset, sector, strong) of each sector word or phrase of the span, longest phrases first."""
        words = [w for w in re.finditer(r"[^\W_]+", text[start:end])]
        lower = [w.group().lower() for w in words]
        table, longest = self.gazetteer.sector_words, self.gazetteer.longest_sector_phrase
        found, index = [], 0
        while index < len(words):
            for n in range(min(longest, len(words) - index), 0, -1):
                meaning = table.get(tuple(lower[index : index + n]))
                if meaning is not None:
                    at = start + words[index].start()
                    stop = start + words[index + n - 1].end()
                    if not (_AFFILIATION_AFTER.match(text, stop) or _AFFILIATION_BEFORE.search(text[max(0, at - 5) : at])):
                        found.append((at, *meaning))
                    index += n
                    break
            else:
                index += 1
        return found

    # --- all of it, for the predictor and the evaluation --------------------------------------------
    def resolve_document(
        self, text: str, sentences: Sequence[tuple[int, int]], actor_spans: Sequence[Sequence[tuple[int, int]]]
    ) -> list[SentenceResolution]:
        """Per sentence (document offsets): its places, event country, and each actor span's resolution."""
        analysis = self.analyse(text, sentences)
        resolved = []
        for sentence, spans in zip(sentences, actor_spans):
            locations, event_country = self.sentence_locations(analysis, *sentence)
            actors = tuple(
                self.resolve_span(analysis, span, sentence, [s for s in spans if s != span]) for span in spans
            )
            resolved.append(SentenceResolution(locations, event_country, actors))
        return resolved

    def resolve_actor(self, span_text: str, sentence: str | None = None, document_country: str | None = None) -> ActorResolution:
        """One actor span by its text, with its sentence (the span's first occurrence in it) and the document's
        dominant country, when known: for hand-made cases and interactive use."""
        sentence = span_text if sentence is None else sentence
        start = sentence.find(span_text)
        if start < 0:
            raise ValueError(f"the span {span_text!r} is not in the sentence {sentence!r}")
        analysis = self.analyse(sentence, [(0, len(sentence))])
        analysis.dominant_country = document_country
        return self.resolve_span(analysis, (start, start + len(span_text)), (0, len(sentence)))


def _place_mention(text: str, match: NameMatch) -> PlaceMention:
    place = match.place
    return PlaceMention(
        text=text[match.start : match.end],
        char_start=match.start,
        char_end=match.end,
        kind=place.kind,
        country=place.country,
        geonames_id=place.geonames_id,
        latitude=place.latitude,
        longitude=place.longitude,
    )
