"""Actor resolution (country, sector, organisation of each actor span) and event location (the places a
sentence names, the country where its event took place), from data packages and the team's tables.

Core: imported by the predictor and the evaluation, never importing them. See :mod:`.resolver` for the
rules, :mod:`.gazetteer` for the data, :mod:`.tables` for the tables users extend, :mod:`.codebook`.
"""

from __future__ import annotations

from conflict_events.config import ResolutionConfig
from conflict_events.resolution.codebook import RESOLVED_BY, SECTORS
from conflict_events.resolution.gazetteer import Gazetteer, cached_gazetteer
from conflict_events.resolution.resolver import ActorResolution, DocumentAnalysis, Resolver, SentenceResolution


def resolver_for(settings: ResolutionConfig) -> Resolver | None:
    """The resolver ``inference.resolution`` describes (its gazetteer built once per process), or None when off."""
    if not settings.enabled:
        return None
    return Resolver(cached_gazetteer(tuple(settings.tables), settings.min_city_population))


__all__ = [
    "ActorResolution", "DocumentAnalysis", "Gazetteer", "RESOLVED_BY", "Resolver", "SECTORS", "SentenceResolution",
    "resolver_for",
]
