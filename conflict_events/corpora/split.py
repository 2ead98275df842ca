"""A deterministic, stratified dev split carved from train when a corpus ships none.

- **Groups, not examples, are assigned.** Examples with the same
  :func:`~conflict_events.corpora.normalise.near_duplicate_key` (same words after dropping whitespace,
  case and punctuation) form one group, and so do examples linked explicitly (the reworded sentence
  pairs found while merging CAMEO). A group goes entirely to train or entirely to dev, so dev never
  scores a sentence the model trained on in another typesetting.
- **Stratified by event label.** Groups are bucketed by the event label of their first labeled
  example (a class name, or the label set for multilabel; groups without any event label form their
  own stratum), and each stratum gives ``round(fraction * its examples)`` examples to dev.
- **Deterministic.** Strata are visited in sorted order and shuffled with one ``random.Random(seed)``;
  nothing depends on hashing or dict order, so the split is the same on every machine and run.

Both halves keep the input order.

Why not ``sklearn.model_selection`` (it was tried, issue 21); per function:

- :func:`carve_dev_split`: ``train_test_split(stratify=...)`` splits examples, so near-duplicates and
  linked pairs would straddle train and dev. Run on groups instead (one row per group, stratified by the
  group's stratum) it raises for a stratum with a single group (a rare class or multilabel label set),
  counts the dev quota in groups rather than examples, and shuffles with NumPy's ``RandomState``:
  on CAMEO (fraction 0.15, seed 13) its dev split (242 examples) would share 32 of today's 236, and the
  published dev figures (docs/BENCHMARKS.md) were measured on today's. ``GroupShuffleSplit`` keeps the
  groups but not the strata. So the split stays this module's, unchanged.
- :func:`_group_indices`: sklearn's splitters take groups as given; finding them (near-duplicate keys
  joined with the linked pairs) is this project's rule, shared with the cross-validation folds.
- :func:`_take_fraction`: the per-stratum quota in examples that the two points above need.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Iterable

from conflict_events.corpora.normalise import near_duplicate_key
from conflict_events.schema import EventExample

UNLABELED_STRATUM = "(no event label)"


def carve_dev_split(
    examples: list[EventExample],
    fraction: float,
    seed: int,
    linked: Iterable[tuple[str, str]] = (),
) -> tuple[list[EventExample], list[EventExample]]:
    """``(train, dev)``; ``linked`` holds pairs of example ids that must land on the same side."""
    groups = _group_indices(examples, linked)
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for group in groups:
        strata[_stratum(examples, group)].append(group)
    rng = random.Random(seed)
    dev_indices: set[int] = set()
    for stratum in sorted(strata):
        dev_indices.update(_take_fraction(strata[stratum], fraction, rng))
    train = [example for index, example in enumerate(examples) if index not in dev_indices]
    dev = [example for index, example in enumerate(examples) if index in dev_indices]
    return train, dev


def stratum_of(example: EventExample) -> str:
    if example.event is None:
        return UNLABELED_STRATUM
    if isinstance(example.event, frozenset):
        return "+".join(sorted(example.event)) or "(empty label set)"
    return example.event


def _stratum(examples: list[EventExample], group: list[int]) -> str:
    for index in group:
        if examples[index].event is not None:
            return stratum_of(examples[index])
    return UNLABELED_STRATUM


def _take_fraction(groups: list[list[int]], fraction: float, rng: random.Random) -> list[int]:
    """Shuffle the groups and take whole groups until the stratum's dev quota is reached."""
    quota = round(fraction * sum(len(group) for group in groups))
    order = list(groups)
    rng.shuffle(order)
    taken: list[int] = []
    for group in order:
        if len(taken) >= quota:
            break
        if len(taken) + len(group) > quota and taken:
            continue  # a big group would overshoot; a later smaller one may fit
        taken.extend(group)
    return taken


def _group_indices(examples: list[EventExample], linked: Iterable[tuple[str, str]]) -> list[list[int]]:
    """Connected components of "same near-duplicate key" and "explicitly linked", in input order."""
    parent = list(range(len(examples)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    def join(first: int, second: int) -> None:
        parent[max(root(first), root(second))] = min(root(first), root(second))

    first_with_key: dict[str, int] = {}
    index_of_id = {example.id: index for index, example in enumerate(examples)}
    for index, example in enumerate(examples):
        key = near_duplicate_key(example.text)
        join(index, first_with_key.setdefault(key, index))
    for first_id, second_id in linked:
        if first_id in index_of_id and second_id in index_of_id:
            join(index_of_id[first_id], index_of_id[second_id])
    components: dict[int, list[int]] = defaultdict(list)
    for index in range(len(examples)):
        components[root(index)].append(index)
    return [components[key] for key in sorted(components)]
