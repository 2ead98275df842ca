"""The team-written resolution tables (``configs/resolution/*.yaml``) and the ones users lay over them.

A table file is a mapping with any of these sections (each file of ``configs/resolution/`` holds one):

- ``demonyms``: ISO3 -> words for its people (``SRB: [Serbian, Serb]``)
- ``country_names``: ISO3 -> names the data packages lack (``CIV: [Ivory Coast]``)
- ``sector_words``: sector code -> ``strong`` and ``weak`` head nouns and phrases (lower case)
- ``organisations``: canonical short name -> ``names``, ``sector`` and ``country`` (an ISO3 code, ``null``
  for an international body; left out: the entry says nothing about the country)
- ``regions``: English name -> ``country`` and ``aliases``
- ``not_places``: capitalised words never taken as a place name

Files are read in order, the team's first, then ``inference.resolution.tables``. A later file extends the
earlier ones and overrides them entry by entry: a surface form (a demonym, a country name, a sector word)
goes to the country or sector its last file gives; an organisation or a region with the same key replaces
the earlier entry whole; ``not_places`` only grows. Unknown sections or keys, unknown sector codes and
unknown country codes are errors naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conflict_events.errors import ConfigError
from conflict_events.resolution.codebook import SECTORS

# The team's tables: configs/resolution/ of the repository this package is installed from.
DEFAULT_TABLES_DIR = Path(__file__).resolve().parents[2] / "configs" / "resolution"
# Kosovo: not in ISO 3166-1; XKX is the user-assigned code the EU, the IMF and GeoNames use.
EXTRA_COUNTRY_CODES = ("XKX",)


def known_country_codes() -> frozenset[str]:
    import pycountry

    return frozenset(country.alpha_3 for country in pycountry.countries) | frozenset(EXTRA_COUNTRY_CODES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SectorWords(_Strict):
    strong: list[str] = Field(default_factory=list)
    weak: list[str] = Field(default_factory=list)


class OrganisationEntry(_Strict):
    names: list[str] = Field(default_factory=list)
    sector: str
    country: str | None = None

    @property
    def states_country(self) -> bool:
        """True when the entry says which country (``null`` included: international), False when it is silent."""
        return "country" in self.model_fields_set


class RegionEntry(_Strict):
    country: str
    aliases: list[str] = Field(default_factory=list)


class TableFile(_Strict):
    demonyms: dict[str, list[str]] = Field(default_factory=dict)
    country_names: dict[str, list[str]] = Field(default_factory=dict)
    sector_words: dict[str, SectorWords] = Field(default_factory=dict)
    organisations: dict[str, OrganisationEntry] = Field(default_factory=dict)
    regions: dict[str, RegionEntry] = Field(default_factory=dict)
    not_places: list[str] = Field(default_factory=list)

    @field_validator("sector_words")
    @classmethod
    def _known_sectors(cls, value: dict[str, SectorWords]) -> dict[str, SectorWords]:
        unknown = sorted(set(value) - set(SECTORS))
        if unknown:
            raise ValueError(f"unknown sector code(s) {', '.join(unknown)}; the codebook has {', '.join(SECTORS)}")
        return value


@dataclass
class ResolutionTables:
    """All table files merged, as lookups from a surface form (or key) to what it means."""

    demonyms: dict[str, str] = field(default_factory=dict)  # form -> ISO3
    country_names: dict[str, str] = field(default_factory=dict)  # name -> ISO3
    sector_words: dict[str, tuple[str, bool]] = field(default_factory=dict)  # lower-case phrase -> (code, strong)
    organisations: dict[str, OrganisationEntry] = field(default_factory=dict)  # canonical -> entry
    regions: dict[str, RegionEntry] = field(default_factory=dict)
    not_places: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)

    def add(self, table: TableFile, source: str) -> None:
        for code, forms in table.demonyms.items():
            for form in forms:
                self.demonyms[form] = code
        for code, names in table.country_names.items():
            for name in names:
                self.country_names[name] = code
        for code, words in table.sector_words.items():
            for strong, phrases in ((True, words.strong), (False, words.weak)):
                for phrase in phrases:
                    self.sector_words[" ".join(phrase.lower().split())] = (code, strong)
        self.organisations.update(table.organisations)
        self.regions.update(table.regions)
        self.not_places.update(table.not_places)
        self.files.append(source)


def default_table_files() -> list[Path]:
    return sorted(DEFAULT_TABLES_DIR.glob("*.yaml"))


def load_tables(extra: Sequence[str | Path] = ()) -> ResolutionTables:
    """The team's tables, then ``extra`` laid over them (``inference.resolution.tables``)."""
    codes = known_country_codes()
    tables = ResolutionTables()
    for path in [*default_table_files(), *map(Path, extra)]:
        tables.add(read_table_file(path, codes), str(path))
    return tables


def read_table_file(path: Path, codes: frozenset[str] | None = None) -> TableFile:
    if not path.is_file():
        raise ConfigError(f"resolution table not found: {path}")
    try:
        # libyaml's loader where PyYAML has it: the team's tables load in ~0.05 s instead of ~0.4 s.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        raw: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a resolution table is a mapping of sections ({', '.join(TableFile.model_fields)})")
    try:
        table = TableFile.model_validate(raw)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            key = ".".join(str(part) for part in problem["loc"])
            problems.append(f"unknown key '{key}'" if problem["type"] == "extra_forbidden" else f"{key}: {problem['msg']}")
        raise ConfigError(f"{path}: invalid resolution table: " + "; ".join(problems)) from None
    _check_codes(table, path, codes if codes is not None else known_country_codes())
    return table


def _check_codes(table: TableFile, path: Path, codes: frozenset[str]) -> None:
    used = [(f"demonyms.{code}", code) for code in table.demonyms]
    used += [(f"country_names.{code}", code) for code in table.country_names]
    used += [(f"regions.{name}.country", entry.country) for name, entry in table.regions.items()]
    used += [(f"organisations.{name}.country", entry.country) for name, entry in table.organisations.items() if entry.country]
    for key, code in used:
        if code not in codes:
            raise ConfigError(f"{path}: {key}: '{code}' is not an ISO 3166-1 alpha-3 code")
    for name, entry in table.organisations.items():
        if entry.sector not in SECTORS:
            raise ConfigError(f"{path}: organisations.{name}.sector: unknown sector code '{entry.sector}'")
