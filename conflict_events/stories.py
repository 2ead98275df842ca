"""Stories and events: near-duplicate articles of an archive grouped into stories, and the events table.

A *story* is a group of near-duplicate documents (wire copies, updates). Documents are taken in the job's
input order; a document whose word-shingle Jaccard similarity to an earlier document is at least
``inference.stories.threshold`` is a copy: ``duplicate_of`` is the earliest such document and ``story_id``
is that document's ``story_id``; any other document starts a story, ``story_id`` its own ``doc_id``. The
rule depends only on the documents in order, so a resumed job (which reads every input again) and the Spark
engine (``inference/spark.py``: Spark ML's ``MinHashLSH`` on the same shingles) give the same stories.

Locally, :class:`StoryIndex` finds the candidates with datasketch's ``MinHashLSH`` and accepts one whose
MinHash estimate of the Jaccard similarity reaches the threshold (Spark compares the shingle sets
exactly, so the two can differ only for a pair within the estimate's error, ~0.035 at 128 permutations,
of the threshold).

The events table (:func:`event_rows`) has one :class:`~conflict_events.records.EventRow` per distinct
(story, event code, source country and sector, target country and sector, event country) of the records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from conflict_events.config import StoriesConfig
from conflict_events.records import EventRow

# What fills the source and target columns: actor roles by *name*; a label schema without them gives nulls.
SOURCE_ROLE = "source"
TARGET_ROLE = "target"
_WORD = re.compile(r"\w+")


def shingles(text: str, size: int) -> list[str]:
    """The distinct ``size``-word shingles of the lowercased words of ``text``, in first-seen order; a text of
    fewer words is one shingle (all of them), a text without words has none."""
    words = _WORD.findall(text.lower())
    if not words:
        return []
    if len(words) < size:
        return [" ".join(words)]
    return list(dict.fromkeys(" ".join(words[i : i + size]) for i in range(len(words) - size + 1)))


@dataclass(frozen=True)
class StoryAssignment:
    story_id: str
    duplicate_of: str | None


class StoryIndex:
    """The documents seen so far, in order; :meth:`assign` places the next one in a story.

    Its state is a function of the documents given, in order: the batch job rebuilds it on ``--resume`` by
    assigning every document again, the committed shards' too, without running the model."""

    def __init__(self, settings: StoriesConfig):
        from datasketch import MinHash, MinHashLSH

        self.settings = settings
        # Bands tuned for recall (a missed copy is a wrong story; a false candidate costs one comparison): at
        # 128 permutations and 0.8, 16 bands of 8 find a pair of similarity 0.85 with probability 0.994.
        self._lsh = MinHashLSH(threshold=settings.threshold, num_perm=settings.num_perm, weights=(0.05, 0.95))
        # The permutations are drawn once (datasketch draws them per MinHash otherwise); only each document's
        # hash values are kept, 8 bytes per permutation.
        self._permutations = MinHash(num_perm=settings.num_perm, seed=1).permutations
        self._signatures: list[Any] = []  # by position; None for a document without words
        self._assigned: list[StoryAssignment] = []
        self._doc_ids: list[str] = []

    def assign(self, doc_id: str, text: str) -> StoryAssignment:
        from datasketch import MinHash

        position = len(self._doc_ids)
        words = shingles(text, self.settings.shingle)
        signature = None
        earliest = None
        if words:
            minhash = MinHash(num_perm=self.settings.num_perm, seed=1, permutations=self._permutations)
            minhash.update_batch([word.encode("utf-8") for word in words])
            signature = minhash.hashvalues
            # MinHash.jaccard: the share of equal hash values estimates the similarity.
            similar = [
                key
                for key in self._lsh.query(minhash)
                if (signature == self._signatures[key]).mean() >= self.settings.threshold
            ]
            earliest = min(similar, default=None)
            self._lsh.insert(position, minhash)
        self._signatures.append(signature)
        self._doc_ids.append(doc_id)
        if earliest is None:
            assignment = StoryAssignment(doc_id, None)
        else:
            assignment = StoryAssignment(self._assigned[earliest].story_id, self._doc_ids[earliest])
        self._assigned.append(assignment)
        return assignment


def resolve_stories(doc_ids: list[str], earliest_similar: Mapping[int, int]) -> list[StoryAssignment]:
    """Story ids from each copy's earliest similar document (positions into ``doc_ids``, always earlier):
    the rule of the module docstring, for an engine that finds the pairs all at once (Spark)."""
    assigned: list[StoryAssignment] = []
    for position, doc_id in enumerate(doc_ids):
        earliest = earliest_similar.get(position)
        if earliest is None:
            assigned.append(StoryAssignment(doc_id, None))
        else:
            assigned.append(StoryAssignment(assigned[earliest].story_id, doc_ids[earliest]))
    return assigned


def _role_pairs(actors: Iterable[Mapping[str, Any]] | None, role: str) -> list[tuple[str | None, str | None]]:
    pairs = [(actor.get("country"), actor.get("sector")) for actor in actors or () if actor["role"] == role]
    return list(dict.fromkeys(pairs)) or [(None, None)]


def event_keys(record: Mapping[str, Any]) -> list[tuple]:
    """The events-table keys a record (its JSON form) supports: one per distinct source (country, sector)
    and target (country, sector) of its actors, their combinations; none for a record without an event code."""
    if record.get("event_code") is None:
        return []
    return [
        (record.get("story_id"), record["event_code"], *source, *target, record.get("event_country"))
        for source in _role_pairs(record.get("actors"), SOURCE_ROLE)
        for target in _role_pairs(record.get("actors"), TARGET_ROLE)
    ]


class EventTable:
    """The events table, built from the records in order (:meth:`add`); rows in order of their first sentence."""

    def __init__(self) -> None:
        self._sentences: dict[tuple, list[str]] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        sentence_id = f"{record['doc_id']}:{record['sentence_index']}"
        for key in event_keys(record):
            self._sentences.setdefault(key, []).append(sentence_id)

    def rows(self) -> list[EventRow]:
        return [EventRow(*key, tuple(ids), len(ids)) for key, ids in self._sentences.items()]


def event_rows(records: Iterable[Mapping[str, Any]]) -> list[EventRow]:
    table = EventTable()
    for record in records:
        table.add(record)
    return table.rows()
