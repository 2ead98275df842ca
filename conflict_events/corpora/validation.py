"""Checks that span examples rather than single lines: duplicates within a file and leakage between splits.

Rules (every finding names both files and lines):

- **Duplicates within one file** (same sentence up to whitespace, case, quotes, dashes and accents,
  i.e. the same :func:`~conflict_events.corpora.normalise.match_key`):
  with the same labels they are a *warning* and only the first copy is kept (the upstream CAMEO
  training file has three verbatim repeats, which would otherwise count twice and could straddle the
  dev split); with *different* labels they are an *error*, because one of the two labels is wrong.
- **Leakage between splits**: a dev or test sentence whose text is identical to a training sentence,
  or equal to it after removing whitespace, case and punctuation
  (:func:`~conflict_events.corpora.normalise.near_duplicate_key`), is an *error*.

Both errors can be turned into removals for upstream files that cannot be fixed: ``data.policy``
(:mod:`~conflict_events.corpora.policy`), which uses :class:`SentenceIndex` and the texts below.

Reader errors (bad bytes, columns, labels, BIO) are produced by the readers themselves; ``load_corpus``
gathers everything, and ``conflict-events data validate`` prints it.
"""

from __future__ import annotations

from typing import Any

from conflict_events.corpora.normalise import match_key, near_duplicate_key
from conflict_events.corpora.textfile import error, warning
from conflict_events.errors import Issue
from conflict_events.schema import EventExample, SourceRef


def where(example: EventExample) -> SourceRef:
    return example.source or SourceRef(example.id, 0)


def describe_source(example: EventExample, relative_to: str | None = None) -> str:
    """``line 17`` when in the file ``relative_to``, else ``file:17``."""
    source = where(example)
    return f"line {source.line}" if source.path == relative_to else f"{source.path}:{source.line}"


def label_signature(example: EventExample) -> tuple[Any, ...]:
    """What two copies of a sentence must agree on: the event and the actor mentions by role."""
    event = tuple(sorted(example.event)) if isinstance(example.event, frozenset) else example.event
    if example.actors is None:
        return (event, None)
    mentions = tuple((span.role, match_key(example.actor_text(span))) for span in example.actors)
    return (event, mentions)


def collapse_duplicates(examples: list[EventExample]) -> tuple[list[EventExample], list[Issue]]:
    """Keep the first copy of each sentence; warn about repeats, error on repeats with other labels."""
    kept: list[EventExample] = []
    first_by_key: dict[str, EventExample] = {}
    issues: list[Issue] = []
    for example in examples:
        key = match_key(example.text)
        first = first_by_key.get(key)
        if first is None:
            first_by_key[key] = example
            kept.append(example)
            continue
        issues.append(_duplicate_issue(example, first))
        if label_signature(example) != label_signature(first):
            kept.append(example)  # kept so the error is visible downstream; loading fails anyway
    return kept, issues


def _duplicate_issue(example: EventExample, first: EventExample) -> Issue:
    source = where(example)
    if label_signature(example) == label_signature(first):
        other = describe_source(first, relative_to=source.path)
        message = f"{_sameness(example, first)} {other} with the same labels; only {other} is kept"
        return warning(source.path, source.line, "text", message)
    return error(source.path, source.line, "text", conflicting_duplicate_text(example, first))


def conflicting_duplicate_text(example: EventExample, first: EventExample) -> str:
    """E.g. ``exact duplicate of line 3 but with different labels (event a, 2 actors vs event b, 2 actors)``."""
    other = describe_source(first, relative_to=where(example).path)
    return f"{_sameness(example, first)} {other} but with different labels ({labels_text(example)} vs {labels_text(first)})"


def _sameness(example: EventExample, first: EventExample) -> str:
    return "exact duplicate of" if example.text == first.text else "same sentence (up to spacing/quotes/case) as"


def labels_text(example: EventExample) -> str:
    """E.g. ``event armed_assault+other, 2 actors`` (``no event label``, ``actors unlabeled``)."""
    if example.event is None:
        event = "no event label"
    elif isinstance(example.event, frozenset):
        event = "event " + ("+".join(sorted(example.event)) or "(none)")
    else:
        event = f"event {example.event}"
    actors = "actors unlabeled" if example.actors is None else f"{len(example.actors)} actors"
    return f"{event}, {actors}"


class SentenceIndex:
    """Looks up, in one split, the first example a sentence of another split leaks from: identical text, or
    the same :func:`~conflict_events.corpora.normalise.near_duplicate_key` (same words)."""

    def __init__(self, examples: list[EventExample]):
        self._by_exact = {example.text: example for example in reversed(examples)}
        self._by_near = {near_duplicate_key(example.text): example for example in reversed(examples)}

    def find(self, text: str) -> tuple[EventExample, str] | None:
        """The matching example and how it matches (``an exact duplicate``, ``a near-duplicate (same words)``)."""
        seen = self._by_exact.get(text)
        if seen is not None:
            return seen, "an exact duplicate"
        seen = self._by_near.get(near_duplicate_key(text))
        return None if seen is None else (seen, "a near-duplicate (same words)")


def find_leakage(
    reference: list[EventExample], others: dict[str, list[EventExample] | None], reference_name: str = "train"
) -> list[Issue]:
    """Errors for sentences of ``others`` (e.g. dev, test) that also occur in ``reference`` (train)."""
    index = SentenceIndex(reference)
    issues: list[Issue] = []
    for split_name, examples in others.items():
        for example in examples or []:
            found = index.find(example.text)
            if found is not None:
                seen, kind = found
                source = where(example)
                message = f"{split_name} sentence is {kind} of {reference_name} sentence {describe_source(seen)} (leakage)"
                issues.append(error(source.path, source.line, "text", message))
    return issues
