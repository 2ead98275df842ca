"""The one example record used everywhere: readers produce it, training and evaluation consume it,
inference produces it.

Offsets are character offsets into ``text`` (Python string indices, end exclusive), so
``text[span.char_start:span.char_end]`` is always the span's surface form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Token:
    """A word-level token and where it sits in the example text."""

    text: str
    char_start: int
    char_end: int


@dataclass(frozen=True)
class ActorSpan:
    """An actor mention: its role tag (e.g. ``S`` source, ``T`` target) and character offsets."""

    role: str
    char_start: int
    char_end: int


@dataclass(frozen=True)
class Filler:
    """A document-level role filler (MUC-4): one entity, named by its coreferent mention strings.

    Fillers are what document-level corpora are scored on (``training/fillers.py``): a predicted string
    that matches any of the mentions finds the entity. The mentions' occurrences in the text are the
    example's actor spans, which is what the token head trains on."""

    role: str
    mentions: tuple[str, ...]


@dataclass(frozen=True)
class SourceRef:
    """Where an example came from, so every later error can point back to the file and line."""

    path: str
    line: int


@dataclass
class EventExample:
    """A sentence (or short passage) with optional event and actor labels.

    - ``event``: multiclass: the event class *name* (``str``); multilabel: a ``frozenset`` of names;
      ``None`` when this example carries no event label.
    - ``actors``: list of :class:`ActorSpan`; ``None`` when the actor layer is unlabeled
      (an empty list means "labeled, and there are no actors").
    - ``fillers``: document-level role fillers (:class:`Filler`), for corpora scored by filler; ``None``
      for sentence-level corpora.
    """

    id: str
    text: str
    tokens: list[Token] = field(default_factory=list)
    event: str | frozenset[str] | None = None
    actors: list[ActorSpan] | None = None
    source: SourceRef | None = None
    fillers: tuple[Filler, ...] | None = None

    @property
    def has_event_label(self) -> bool:
        return self.event is not None

    @property
    def has_actor_labels(self) -> bool:
        return self.actors is not None

    def actor_text(self, span: ActorSpan) -> str:
        return self.text[span.char_start : span.char_end]

    def to_json(self) -> dict[str, Any]:
        """Canonical JSONL form (see ``corpora.jsonl``): ``{"id", "text", "event"?, "actors"?, "tokens"?}``
        where ``event`` is a class name (multiclass) or a sorted list of names (multilabel) and each actor
        is ``{"role", "char_start", "char_end", "text"}``; ``fillers`` (document-level corpora) is a list of
        ``{"role", "mentions"}``. A missing key means that layer is unlabeled."""
        record: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.tokens:
            record["tokens"] = [
                {"text": t.text, "char_start": t.char_start, "char_end": t.char_end} for t in self.tokens
            ]
        if isinstance(self.event, frozenset):
            record["event"] = sorted(self.event)
        elif self.event is not None:
            record["event"] = self.event
        if self.actors is not None:
            record["actors"] = [
                {"role": a.role, "char_start": a.char_start, "char_end": a.char_end, "text": self.actor_text(a)}
                for a in self.actors
            ]
        if self.fillers is not None:
            record["fillers"] = [{"role": f.role, "mentions": list(f.mentions)} for f in self.fillers]
        return record


@dataclass(frozen=True)
class Document:
    """An unlabeled document for inference: an id and its full text."""

    id: str
    text: str
    source: SourceRef | None = None
