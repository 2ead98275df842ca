"""K-fold cross-validation splits of the training data, with the same rules as the dev split
(:mod:`conflict_events.corpora.split`):

- **groups, not examples, are assigned**: near-duplicates (same words after dropping whitespace, case and
  punctuation) and the reworded sentence pairs found while merging CAMEO form one group, and a group lands
  wholly in one fold, so a held-out fold never scores a sentence the model trained on in another wording;
- **stratified by event class** (multilabel: by label set; no event label: a stratum of its own): within a
  stratum, groups are shuffled, ordered by size (largest first) and each goes to the fold that holds the
  fewest examples of that stratum so far (ties: the smallest fold overall, then the lowest index), so every
  class is spread evenly;
- **deterministic**: strata in sorted order, one ``random.Random(seed)``, nothing depends on hashing.

Every example is in exactly one held-out fold; fold ``i``'s training part is everything else, in input order.

The pool that is cross-validated is the training split as read: when dev is carved from train (CAMEO) the
carved dev examples go back into the pool; a configured dev file stays out of it.

Why :func:`kfold_assignment` is not ``sklearn.model_selection.StratifiedGroupKFold`` (tried, issue 21):
that splitter keeps all three properties above (``shuffle=True, random_state=seed``, the stratum of each
example as ``y``, the groups of :func:`conflict_events.corpora.split._group_indices`), and on CAMEO train
(seeds 13-17) it spreads the strata a little more evenly: every stratum's fold counts within 1 of each
other, ours within 1 for the classes and up to 3 for the unlabeled examples, which ride with the labeled
sentence they are linked to (sklearn balances examples, ours groups). But it draws another partition:
with its folds matched to ours it agrees on 22-23% of CAMEO's examples, and the cross-validated figures
of docs/EXPERIMENTS.md and docs/BENCHMARKS.md were measured, and are compared fold by fold (paired
deltas, runs cut off after 3 folds), on these folds. So the assignment stays ours;
``tests/test_crossval.py`` checks it against sklearn's on its corpus (as even, to one example per stratum).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from conflict_events.config import Config
from conflict_events.corpora.corpus import load_corpus
from conflict_events.corpora.split import _group_indices, stratum_of
from conflict_events.errors import ConfigError, DataError, Issue, Location
from conflict_events.schema import EventExample


@dataclass(frozen=True)
class Fold:
    index: int  # 0-based
    train: list[EventExample]
    dev: list[EventExample]
    # Where train's examples are in the cross-validated examples (so a fold's features can be taken from the
    # pool's, tokenised once: training/data.py).
    train_rows: tuple[int, ...]


def kfold_assignment(
    examples: Sequence[EventExample], folds: int, seed: int, linked: Iterable[tuple[str, str]] = ()
) -> list[int]:
    """The held-out fold (0..folds-1) of every example."""
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds (got {folds})")
    groups = _group_indices(list(examples), linked)
    if len(groups) < folds:
        raise ConfigError(
            f"cannot make {folds} folds from {len(groups)} groups of near-duplicate examples ({len(examples)} examples)"
        )
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for group in groups:
        strata[_group_stratum(examples, group)].append(group)
    rng = random.Random(seed)
    fold_of = [-1] * len(examples)
    fold_sizes = [0] * folds
    for stratum in sorted(strata):
        order = list(strata[stratum])
        rng.shuffle(order)
        order.sort(key=len, reverse=True)  # big groups first (stable: shuffled among equals) balances best
        in_stratum = [0] * folds
        for group in order:
            target = min(range(folds), key=lambda fold: (in_stratum[fold], fold_sizes[fold], fold))
            for index in group:
                fold_of[index] = target
            in_stratum[target] += len(group)
            fold_sizes[target] += len(group)
    return fold_of


def kfold_splits(
    examples: Sequence[EventExample], folds: int, seed: int, linked: Iterable[tuple[str, str]] = ()
) -> list[Fold]:
    """``folds`` (train, held-out) splits; both parts keep the input order."""
    fold_of = kfold_assignment(examples, folds, seed, linked)
    return [
        Fold(
            index=fold,
            train=[example for example, held_out in zip(examples, fold_of) if held_out != fold],
            dev=[example for example, held_out in zip(examples, fold_of) if held_out == fold],
            train_rows=tuple(row for row, held_out in enumerate(fold_of) if held_out != fold),
        )
        for fold in range(folds)
    ]


def _group_stratum(examples: Sequence[EventExample], group: list[int]) -> str:
    for index in group:
        if examples[index].event is not None:
            return stratum_of(examples[index])
    return stratum_of(examples[group[0]])


@dataclass(frozen=True)
class CrossValidationPool:
    examples: list[EventExample]
    linked: list[tuple[str, str]]
    test: list[EventExample] | None
    origin: str


def cross_validation_pool(config: Config) -> CrossValidationPool:
    """The examples to cross-validate (see the module docstring), the reworded pairs that must stay
    together, and the test split (None when absent). Validation errors raise :class:`DataError`."""
    # The debug limit data.max_train_examples applies to each fold's training part, not to the pool.
    unlimited = config.model_copy(update={"data": config.data.model_copy(update={"max_train_examples": None})})
    corpus = load_corpus(unlimited)
    if corpus.dev_origin == "configured":
        examples, origin = list(corpus.train), "the training split (the configured dev split is not used)"
    else:
        examples, origin = list(corpus.train) + list(corpus.dev), "the training split (dev carved from it is put back)"
    if not examples:
        raise DataError(Issue(Location(config.data.root), "the training split has no examples"))
    merge = corpus.merges.get("train")
    linked = [(pair.events_id, pair.actors_id) for pair in merge.revised] if merge else []
    return CrossValidationPool(examples, linked, list(corpus.test) if corpus.test else None, origin)


def config_folds(config: Config, folds: int, repeat: int = 0, pool: CrossValidationPool | None = None) -> list[Fold]:
    """The folds of the configured training data (``pool``: already loaded by
    :func:`cross_validation_pool`). The partition seed is ``data.dev_split.seed + repeat``, so repeated
    cross-validation (``--seeds``) also draws new partitions, the same ones for every recipe.
    ``data.max_train_examples`` then keeps the first N examples of each fold's training part."""
    pool = pool if pool is not None else cross_validation_pool(config)
    splits = kfold_splits(pool.examples, folds, config.data.dev_split.seed + repeat, pool.linked)
    limit = config.data.max_train_examples
    if limit is not None:
        splits = [Fold(fold.index, fold.train[:limit], fold.dev, fold.train_rows[:limit]) for fold in splits]
    return splits
