"""The actor codebook: sector codes, what decided a country, kinds of place. One definition, used by the
table loader (to check codes), the resolver, the evaluation and the docs (docs/INFERENCE.md, "Resolution")."""

from __future__ import annotations

# Code -> what it covers (issue 17's codebook, verbatim in docs/INFERENCE.md).
SECTORS: dict[str, str] = {
    "GOV": "government, executive, diplomats, a state named as actor",
    "MIL": "armed forces",
    "COP": "police and security services",
    "REB": "rebels, insurgents, militants, armed groups",
    "OPP": "opposition, activists, protesters",
    "PTY": "political party",
    "LEG": "legislature",
    "JUD": "courts, prosecutors",
    "CVL": "civilians, residents, refugees, populations",
    "BUS": "business",
    "MED": "media",
    "IGO": "intergovernmental organisation",
    "NGO": "non-governmental organisation",
    "REL": "religious",
    "UNK": "cannot tell",
}
UNKNOWN_SECTOR = "UNK"
# Sectors whose named organisations get a record's `org` (the canonical short name).
ORG_SECTORS = ("IGO", "NGO")
# What decided an actor's country, in the order they are tried (`resolved_by`; null: none did).
RESOLVED_BY = ("span", "sentence", "document")
PLACE_KINDS = ("country", "region", "city")
