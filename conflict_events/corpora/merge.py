"""Merging an event file and an actor file of the same split into joint examples (the CAMEO corpus).

The class file (``cameo_class``) holds natural sentences with an event class; the actor file
(``cameo_ner``) holds mostly the same sentences, tokenised, with BIO actor tags. A sentence is paired
across the two files when both have the same :func:`~conflict_events.corpora.normalise.match_key`
(whitespace, case, quotes, dashes, accents and invisible characters ignored).

A paired sentence becomes one joint example with the *natural text of the class file*; its tokens and
actor spans are projected from the tokenised text onto that text by aligning the two normalised
character streams (identical by construction), and every projected mention is checked against the
tokens it came from. Sentences found in one file only keep that layer: event-only examples
(``actors is None``) and actor-only examples (``event is None``).

Many of the sentences left unpaired are not missing from the other file but *reworded* there (the
annotators of the actor file edited some sentences, e.g. "in the country" became "in Thailand").
Such near matches (see :data:`REVISED_MIN_COVERAGE`) are not merged, because the actor tags belong to
a different wording; they are reported as revised pairs, and the dev split keeps both versions on the
same side. See docs/DATA.md for the counts and examples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher

from conflict_events.corpora.normalise import NormalisedText, match_key
from conflict_events.corpora.textfile import warning
from conflict_events.corpora.validation import where
from conflict_events.errors import Issue
from conflict_events.schema import ActorSpan, EventExample, Token

# Thresholds for taking an unpaired event sentence and an unpaired actor sentence to be rewordings of
# one another. The actor file often shortens a sentence (drops a trailing clause) or spells out an
# actor ("the country" -> "Thailand"), so the score is how much of the *shorter* sentence is found in
# the longer one (difflib matching characters of the match keys), and the overall difflib ratio must
# also be reasonable so a short generic sentence ("workers went on strike") does not pair with any
# long one. Tuned by reading the CAMEO train pairs on either side of the thresholds (docs/DATA.md).
REVISED_MIN_COVERAGE = 0.6
REVISED_MIN_RATIO = 0.5
# Word containment prefilter (shared words / words of the shorter sentence) so difflib runs on few pairs.
_CANDIDATE_WORD_CONTAINMENT = 0.5


@dataclass(frozen=True)
class RevisedPair:
    """An event-only and an actor-only example that are rewordings of one sentence."""

    events_id: str
    actors_id: str
    similarity: float


@dataclass
class MergeReport:
    """How the two files of a split were paired."""

    events_file: str
    actors_file: str
    events_read: int = 0
    actors_read: int = 0
    matched: int = 0
    events_only: int = 0
    actors_only: int = 0
    revised: list[RevisedPair] = field(default_factory=list)
    unpaired_events: list[EventExample] = field(default_factory=list)
    unpaired_actors: list[EventExample] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.events_file} ({self.events_read} distinct sentences) + {self.actors_file} ({self.actors_read}): "
            f"{self.matched} matched, {self.events_only} class-only, {self.actors_only} actors-only "
            f"({len(self.revised)} of these pairs are reworded in the actor file and kept apart)"
        )

    def to_json(self) -> dict:
        return {
            "events_file": self.events_file,
            "actors_file": self.actors_file,
            "events_read": self.events_read,
            "actors_read": self.actors_read,
            "matched": self.matched,
            "class_only": self.events_only,
            "actors_only": self.actors_only,
            "revised_pairs": len(self.revised),
        }


@dataclass
class MergeResult:
    examples: list[EventExample]
    report: MergeReport
    issues: list[Issue]


def merge_layers(
    event_examples: list[EventExample],
    actor_examples: list[EventExample],
    events_file: str,
    actors_file: str,
) -> MergeResult:
    """Pair sentences of an event file and an actor file; unpaired ones keep their single layer.

    Output order: the event file's order (joint or event-only), then the actor-only examples.
    Both inputs should already be free of duplicates (see ``validation.collapse_duplicates``); a key
    that still occurs twice pairs its first occurrences only.
    """
    report = MergeReport(events_file, actors_file, len(event_examples), len(actor_examples))
    issues: list[Issue] = []
    actors_by_key: dict[str, EventExample] = {}
    for example in actor_examples:
        actors_by_key.setdefault(match_key(example.text), example)
    merged: list[EventExample] = []
    paired_actor_ids: set[str] = set()
    for event_example in event_examples:
        actor_example = actors_by_key.pop(match_key(event_example.text), None)
        joint = None
        if actor_example is not None:
            joint, issue = project_actor_layer(event_example, actor_example)
            if issue is not None:
                issues.append(issue)
        if joint is None:
            merged.append(event_example)
            report.unpaired_events.append(event_example)
            continue
        merged.append(joint)
        paired_actor_ids.add(actor_example.id)
    report.unpaired_actors = [example for example in actor_examples if example.id not in paired_actor_ids]
    merged.extend(report.unpaired_actors)
    report.matched = len(paired_actor_ids)
    report.events_only = len(report.unpaired_events)
    report.actors_only = len(report.unpaired_actors)
    report.revised = find_revised_pairs(report.unpaired_events, report.unpaired_actors)
    return MergeResult(merged, report, issues)


def project_actor_layer(
    event_example: EventExample, actor_example: EventExample
) -> tuple[EventExample | None, Issue | None]:
    """The event example with the actor example's tokens and spans moved onto its text.

    Returns ``(None, warning)`` if a span cannot be placed exactly; the two examples then stay apart.
    """
    natural = NormalisedText.of(event_example.text)
    tokenised = NormalisedText.of(actor_example.text)
    if natural.key != tokenised.key:
        raise ValueError("project_actor_layer needs two texts with the same match key")
    tokens = [_project_token(token, natural, tokenised, event_example.text) for token in actor_example.tokens]
    spans: list[ActorSpan] = []
    for span in actor_example.actors or []:
        projected = _project_span(span, natural, tokenised, event_example.text, actor_example)
        if projected is None:
            source = where(actor_example)
            message = (
                f"actor span {actor_example.actor_text(span)!r} could not be placed on the sentence of "
                f"{where(event_example).path}:{where(event_example).line}; the two are kept apart"
            )
            return None, warning(source.path, source.line, "actors", message)
        spans.append(projected)
    joint = replace(event_example, tokens=[t for t in tokens if t is not None], actors=spans)
    return joint, None


def _project_range(
    char_start: int, char_end: int, natural: NormalisedText, tokenised: NormalisedText
) -> tuple[int, int] | None:
    key_lo, key_hi = tokenised.key_range(char_start, char_end)
    if key_lo == key_hi:
        return None  # only invisible characters (e.g. a lone U+202A token): nothing to align
    return natural.source_range(key_lo, key_hi)


def _project_token(
    token: Token, natural: NormalisedText, tokenised: NormalisedText, text: str
) -> Token | None:
    placed = _project_range(token.char_start, token.char_end, natural, tokenised)
    if placed is None:
        return None
    return Token(text[placed[0] : placed[1]], placed[0], placed[1])


def _project_span(
    span: ActorSpan, natural: NormalisedText, tokenised: NormalisedText, text: str, actor_example: EventExample
) -> ActorSpan | None:
    placed = _project_range(span.char_start, span.char_end, natural, tokenised)
    if placed is None:
        return None
    # The projected surface must normalise to exactly the tagged tokens (guards against a character
    # that expands into several key characters being split between two tokens).
    if match_key(text[placed[0] : placed[1]]) != match_key(actor_example.actor_text(span)):
        return None
    return ActorSpan(span.role, placed[0], placed[1])


def find_revised_pairs(
    event_examples: list[EventExample], actor_examples: list[EventExample]
) -> list[RevisedPair]:
    """Greedy one-to-one pairing, best pairs first, of unpaired sentences that reword one another."""
    event_words = [_words_of(example.text) for example in event_examples]
    event_keys = [match_key(example.text) for example in event_examples]
    candidates: list[tuple[float, int, int]] = []
    for actor_index, actor_example in enumerate(actor_examples):
        words = _words_of(actor_example.text)
        actor_key = match_key(actor_example.text)
        for event_index, other_words in enumerate(event_words):
            if len(words & other_words) < _CANDIDATE_WORD_CONTAINMENT * min(len(words), len(other_words)):
                continue
            similarity = _rewording_similarity(event_keys[event_index], actor_key)
            if similarity is not None:
                candidates.append((similarity, event_index, actor_index))
    pairs: list[RevisedPair] = []
    used_events: set[int] = set()
    used_actors: set[int] = set()
    for similarity, event_index, actor_index in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if event_index in used_events or actor_index in used_actors:
            continue
        used_events.add(event_index)
        used_actors.add(actor_index)
        pairs.append(RevisedPair(event_examples[event_index].id, actor_examples[actor_index].id, similarity))
    return sorted(pairs, key=lambda pair: pair.events_id)


def _rewording_similarity(first_key: str, second_key: str) -> float | None:
    """Mean of coverage-of-the-shorter and difflib ratio, or ``None`` below either threshold."""
    if not first_key or not second_key:
        return None
    matcher = SequenceMatcher(None, first_key, second_key, autojunk=False)
    matching = sum(block.size for block in matcher.get_matching_blocks())
    coverage = matching / min(len(first_key), len(second_key))
    ratio = 2 * matching / (len(first_key) + len(second_key))
    if coverage < REVISED_MIN_COVERAGE or ratio < REVISED_MIN_RATIO:
        return None
    return round((coverage + ratio) / 2, 3)


def _words_of(text: str) -> frozenset[str]:
    """Normalised words, split *before* normalising (the match key has no spaces)."""
    return frozenset(word for word in (match_key(part) for part in re.split(r"[\W_]+", text)) if word)
