"""Offset alignment: the one place where character offsets, sub-word tokens and BIO tags meet.

Actor roles are tagged at the *sub-word* level: every non-special sub-word gets a BIO tag from the
character span it falls in. Working on sub-words rather than words keeps predicted spans exactly on
character boundaries the tokenizer sees (``governmentʼs`` is one BERT word but three sub-words, and the
gold actor is only ``government``), and training and inference need nothing but the text and its spans.

- :func:`bio_tags_for_subwords` turns gold ``ActorSpan``s into one BIO tag per sub-word.
- :func:`decode_bio` turns per-sub-word tag scores into valid BIO sequences (constrained Viterbi or
  greedy-with-repair), so a decoded sequence never starts a span with ``I-``.
- :func:`spans_from_tags` turns a valid tag sequence back into character spans.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from conflict_events.labels import OUTSIDE
from conflict_events.schema import ActorSpan

IGNORE_INDEX = -100

Offsets = Sequence[tuple[int, int]]


def is_special(offset: tuple[int, int]) -> bool:
    """Special tokens ([CLS], [SEP], padding) have an empty character range."""
    return offset[0] == offset[1]


def bio_tags_for_subwords(offsets: Offsets, spans: Sequence[ActorSpan]) -> list[str | None]:
    """One BIO tag per sub-word (``None`` for special tokens), from character spans.

    A sub-word belongs to a span when its characters overlap it; the first such sub-word gets ``B-``.
    Spans are assumed not to overlap each other (readers reject overlapping spans).
    """
    tags: list[str | None] = []
    ordered = sorted(spans, key=lambda span: span.char_start)
    started: set[int] = set()
    for offset in offsets:
        if is_special(offset):
            tags.append(None)
            continue
        start, end = offset
        tag = OUTSIDE
        for index, span in enumerate(ordered):
            if start < span.char_end and end > span.char_start:
                tag = ("I-" if index in started else "B-") + span.role
                started.add(index)
                break
        tags.append(tag)
    return tags


def bio_label_ids(offsets: Offsets, spans: Sequence[ActorSpan] | None, bio_tags: list[str]) -> list[int]:
    """Sub-word label ids for the role head; all ``IGNORE_INDEX`` when the actor layer is unlabeled."""
    if spans is None:
        return [IGNORE_INDEX] * len(offsets)
    index = {tag: i for i, tag in enumerate(bio_tags)}
    return [IGNORE_INDEX if tag is None else index[tag] for tag in bio_tags_for_subwords(offsets, spans)]


def allowed_transitions(bio_tags: list[str]) -> np.ndarray:
    """``allowed[i, j]`` is True when tag j may follow tag i. ``I-x`` may follow only ``B-x``/``I-x``."""
    size = len(bio_tags)
    allowed = np.ones((size, size), dtype=bool)
    for j, tag in enumerate(bio_tags):
        if tag.startswith("I-"):
            role = tag[2:]
            for i, previous in enumerate(bio_tags):
                allowed[i, j] = previous in (f"B-{role}", f"I-{role}")
    return allowed


def allowed_starts(bio_tags: list[str]) -> np.ndarray:
    return np.array([not tag.startswith("I-") for tag in bio_tags], dtype=bool)


def viterbi_decode(log_probs: np.ndarray, bio_tags: list[str]) -> list[int]:
    """Best tag sequence under the BIO constraints for one sequence of shape (length, num_tags).

    The recursion of :func:`viterbi_decode_numpy` in plain Python floats: with a handful of tags, numpy's
    per-call cost made most of the decode time (four array operations per position). The result is the same
    tag for tag: a transition is allowed (adds 0.0) or not (-inf), so the best score into a tag is the
    largest score among the tags allowed before it, summed in float64 as numpy sums it, and ties go to the
    lowest tag index as ``argmax``'s do (an all -inf column's ``argmax`` is 0). Input with NaN or +inf,
    where numpy's arithmetic differs (-inf + inf), goes to the numpy version."""
    length = log_probs.shape[0]
    if length == 0:
        return []
    if not (log_probs < np.inf).all():  # NaN or +inf
        return viterbi_decode_numpy(log_probs, bio_tags)
    rows = log_probs.tolist()
    predecessors, starts = _bio_structure(tuple(bio_tags))
    score = [value if start else -math.inf for value, start in zip(rows[0], starts)]
    backpointers: list[list[int]] = [[]]
    for row in rows[1:]:
        best = _first_max(score, range(len(score)))  # into a tag that may follow any tag
        pointers, updated = [], []
        for tag, allowed in enumerate(predecessors):
            pointer, value = best if allowed is None else _first_max(score, allowed)
            pointers.append(pointer)
            updated.append(value + row[tag])
        backpointers.append(pointers)
        score = updated
    best_path = [_first_max(score, range(len(score)))[0]]
    for position in range(length - 1, 0, -1):
        best_path.append(backpointers[position][best_path[-1]])
    return best_path[::-1]


def _first_max(score: list[float], candidates: Iterable[int]) -> tuple[int, float]:
    """(index, value) of the first largest of ``score[candidates]`` (ascending), as numpy's ``argmax`` and
    ``max`` over a column that is -inf elsewhere: index 0 when every candidate is -inf."""
    best, best_value = 0, -math.inf
    for index in candidates:
        if score[index] > best_value:
            best, best_value = index, score[index]
    return best, best_value


@functools.lru_cache(maxsize=None)
def _bio_structure(bio_tags: tuple[str, ...]) -> tuple[list[tuple[int, ...] | None], list[bool]]:
    """Per tag, the tags allowed before it (ascending; None: every tag), and whether it may start."""
    allowed = allowed_transitions(list(bio_tags))
    predecessors = [
        None if column.all() else tuple(int(i) for i in np.flatnonzero(column)) for column in allowed.T
    ]
    return predecessors, [bool(start) for start in allowed_starts(list(bio_tags))]


def viterbi_decode_numpy(log_probs: np.ndarray, bio_tags: list[str]) -> list[int]:
    """:func:`viterbi_decode` with numpy arrays (the reference the plain-float version is tested against)."""
    length = log_probs.shape[0]
    if length == 0:
        return []
    transition = np.where(allowed_transitions(bio_tags), 0.0, -np.inf)
    score = np.where(allowed_starts(bio_tags), log_probs[0], -np.inf)
    backpointers = np.zeros((length, len(bio_tags)), dtype=np.int64)
    for position in range(1, length):
        candidates = score[:, None] + transition  # previous tag x next tag
        backpointers[position] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[position]
    best = [int(score.argmax())]
    for position in range(length - 1, 0, -1):
        best.append(int(backpointers[position, best[-1]]))
    return best[::-1]


def greedy_decode(log_probs: np.ndarray, bio_tags: list[str]) -> list[int]:
    """Arg-max per position, then repair: an ``I-x`` that cannot continue a span becomes ``B-x``."""
    tags = [int(i) for i in log_probs.argmax(axis=-1)]
    previous = OUTSIDE
    for position, tag_id in enumerate(tags):
        tag = bio_tags[tag_id]
        if tag.startswith("I-") and previous not in (f"B-{tag[2:]}", tag):
            tags[position] = bio_tags.index(f"B-{tag[2:]}")
            tag = bio_tags[tags[position]]
        previous = tag
    return tags


def decode_bio(log_probs: np.ndarray, bio_tags: list[str], method: str = "viterbi") -> list[int]:
    """Valid BIO tag ids for one sequence of per-position log-probabilities (specials already removed)."""
    if method == "viterbi":
        return viterbi_decode(log_probs, bio_tags)
    if method == "greedy":
        return greedy_decode(log_probs, bio_tags)
    raise ValueError(f"unknown decoding method '{method}' (expected 'viterbi' or 'greedy')")


@dataclass(frozen=True)
class TaggedSpan:
    """A decoded span over positions ``[first, last]`` (inclusive) of the tag sequence."""

    role: str
    first: int
    last: int


def spans_from_tags(tags: Sequence[str]) -> list[TaggedSpan]:
    """Spans of a BIO sequence. Expects a valid sequence; a stray ``I-`` opens a new span anyway."""
    spans: list[TaggedSpan] = []
    role: str | None = None
    first = 0
    for position, tag in enumerate(list(tags) + [OUTSIDE]):
        continues = role is not None and tag == f"I-{role}"
        if continues:
            continue
        if role is not None:
            spans.append(TaggedSpan(role, first, position - 1))
            role = None
        if tag != OUTSIDE:
            role, first = tag[2:], position
    return spans


def char_spans(tags: Sequence[str], offsets: Offsets, scores: Sequence[float] | None = None) -> list[tuple[str, int, int, float]]:
    """``(role, char_start, char_end, score)`` for each span of ``tags`` aligned with ``offsets``.

    The score of a span is the mean probability of its tags (1.0 when no scores are given).
    """
    result = []
    for span in spans_from_tags(tags):
        start = offsets[span.first][0]
        end = offsets[span.last][1]
        score = float(np.mean(scores[span.first : span.last + 1])) if scores is not None else 1.0
        result.append((span.role, start, end, score))
    return result


def is_valid_bio(tags: Sequence[str]) -> bool:
    previous = OUTSIDE
    for tag in tags:
        if tag.startswith("I-") and previous not in (f"B-{tag[2:]}", tag):
            return False
        previous = tag
    return True
