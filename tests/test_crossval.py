"""K-fold cross-validation splits: an exact partition, stratified, near-duplicates and linked pairs
together, deterministic; and the pool taken from a config (carved dev put back)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from conflict_events.corpora.split import stratum_of
from conflict_events.errors import ConfigError
from conflict_events.schema import EventExample
from conflict_events.training.crossval import config_folds, cross_validation_pool, kfold_assignment, kfold_splits
from conflict_events.training.testing import tiny_config, write_tiny_corpus

CLASSES = ["neutral", "verbal_cooperation", "material_cooperation", "verbal_conflict", "material_conflict"]


def corpus() -> list[EventExample]:
    examples = [
        EventExample(f"e{i}", f"Sentence number {i} about {CLASSES[i % 5]}.", event=CLASSES[i % 5]) for i in range(103)
    ]
    examples += [EventExample(f"a{i}", f"Actor-only sentence {i}.", actors=[]) for i in range(17)]
    # Near-duplicates of e3 (case, punctuation, spacing) and a reworded pair linked by id.
    examples += [
        EventExample("dup1", "sentence NUMBER 3 about verbal_conflict", event="verbal_conflict"),
        EventExample("dup2", "Sentence  number 3, about verbal conflict!", event="verbal_conflict"),
        EventExample("reworded", "Completely different wording of e10.", actors=[]),
    ]
    return examples


LINKED = [("e10", "reworded")]


def ids(examples):
    return [example.id for example in examples]


def test_folds_partition_the_examples_exactly():
    examples = corpus()
    folds = kfold_splits(examples, 5, seed=13, linked=LINKED)
    held_out = [example_id for fold in folds for example_id in ids(fold.dev)]
    assert sorted(held_out) == sorted(ids(examples))  # every example in exactly one held-out fold
    assert len(held_out) == len(set(held_out))
    order = {example.id: index for index, example in enumerate(examples)}
    for fold in folds:
        assert set(ids(fold.train)) | set(ids(fold.dev)) == set(ids(examples))
        assert not set(ids(fold.train)) & set(ids(fold.dev))
        # both parts keep the input order
        assert [order[i] for i in ids(fold.train)] == sorted(order[i] for i in ids(fold.train))
        assert [order[i] for i in ids(fold.dev)] == sorted(order[i] for i in ids(fold.dev))
    sizes = [len(fold.dev) for fold in folds]
    assert max(sizes) - min(sizes) <= 3


def test_folds_are_stratified_by_event_class_with_unlabeled_as_a_stratum():
    examples = corpus()
    folds = kfold_splits(examples, 5, seed=13, linked=LINKED)
    totals = Counter(stratum_of(example) for example in examples)
    for stratum, total in totals.items():
        per_fold = [sum(stratum_of(e) == stratum for e in fold.dev) for fold in folds]
        # each fold gets its share of every class, up to the size of the near-duplicate group (3)
        assert all(abs(count - total / 5) <= 3 for count in per_fold), (stratum, per_fold)
    # classes without near-duplicate groups split within one example per fold
    for stratum in ("neutral", "material_conflict", "(no event label)"):
        per_fold = [sum(stratum_of(e) == stratum for e in fold.dev) for fold in folds]
        assert max(per_fold) - min(per_fold) <= 1, (stratum, per_fold)


def test_near_duplicates_and_linked_pairs_share_a_fold():
    examples = corpus()
    fold_of = dict(zip(ids(examples), kfold_assignment(examples, 5, seed=13, linked=LINKED)))
    assert fold_of["e3"] == fold_of["dup1"] == fold_of["dup2"]
    assert fold_of["e10"] == fold_of["reworded"]


def test_folds_are_deterministic_and_depend_on_the_seed():
    first = kfold_assignment(corpus(), 5, seed=13, linked=LINKED)
    assert first == kfold_assignment(corpus(), 5, seed=13, linked=LINKED)
    assert first != kfold_assignment(corpus(), 5, seed=14, linked=LINKED)


def test_too_few_groups_or_folds_are_errors():
    examples = corpus()[:3]
    with pytest.raises(ConfigError, match="cannot make 5 folds from 3 groups"):
        kfold_splits(examples, 5, seed=1)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        kfold_splits(examples, 1, seed=1)


def test_the_pool_puts_a_carved_dev_split_back_and_the_limit_applies_per_fold(tmp_path):
    write_tiny_corpus(tmp_path / "data", count=40)
    config = tiny_config(tmp_path / "data", "unused-encoder", tmp_path / "ckpt")
    pool = cross_validation_pool(config)
    assert len(pool.examples) == 40 and pool.test is None
    folds = config_folds(config, 4, pool=pool)
    assert sorted(i for fold in folds for i in ids(fold.dev)) == sorted(ids(pool.examples))
    limited = tiny_config(tmp_path / "data", "unused-encoder", tmp_path / "ckpt", data={"max_train_examples": 10})
    limited_folds = config_folds(limited, 4)
    assert [ids(fold.dev) for fold in limited_folds] == [ids(fold.dev) for fold in folds]
    assert all(len(fold.train) == 10 for fold in limited_folds)
    # another repeat draws another partition
    assert [ids(fold.dev) for fold in config_folds(config, 4, repeat=1, pool=pool)] != [ids(fold.dev) for fold in folds]


# --- the folds the published cross-validated figures were measured on stay the same (issue 21) ----------
def test_the_folds_of_a_fixed_corpus_and_seed_are_pinned():
    # Computed before the metrics moved to scikit-learn; StratifiedGroupKFold would draw other folds.
    examples = [EventExample(f"e{i}", f"Sentence number {i} about {CLASSES[i % 5]}.", event=CLASSES[i % 5]) for i in range(25)]
    examples += [EventExample(f"a{i}", f"Actor-only sentence {i}.", actors=[]) for i in range(5)]
    examples += [EventExample("dup", "SENTENCE number 7, about material cooperation", event="material_cooperation")]
    assert kfold_assignment(examples, 3, seed=13, linked=[("e3", "a1")]) == [
        0, 0, 2, 2, 0, 2, 1, 0, 0, 2, 1, 2, 1, 0, 2, 1, 0, 2, 1, 1, 0, 2, 1, 1, 1, 1, 2, 2, 0, 0, 0,
    ]


def test_the_folds_are_as_even_as_sklearns_stratified_group_kfold():
    from sklearn.model_selection import StratifiedGroupKFold

    from conflict_events.corpora.split import _group_indices

    examples = corpus()
    strata = np.array([stratum_of(example) for example in examples])
    group_of = np.empty(len(examples), dtype=int)
    for number, group in enumerate(_group_indices(examples, LINKED)):
        group_of[group] = number

    def spread(fold_of: np.ndarray) -> dict[str, int]:
        return {s: int(np.ptp([((fold_of == f) & (strata == s)).sum() for f in range(5)])) for s in set(strata)}

    for seed in range(5):
        ours = np.array(kfold_assignment(examples, 5, seed=seed, linked=LINKED))
        theirs = np.empty(len(examples), dtype=int)
        splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(examples)), strata, group_of)):
            theirs[held_out] = fold
        # both keep every group in one fold
        for fold_of in (ours, theirs):
            assert all(len(set(fold_of[group_of == g])) == 1 for g in set(group_of))
        ours_spread, their_spread = spread(ours), spread(theirs)
        assert all(ours_spread[s] <= their_spread[s] + 1 for s in ours_spread), (seed, ours_spread, their_spread)
        assert np.ptp(np.bincount(ours, minlength=5)) <= np.ptp(np.bincount(theirs, minlength=5)) + 1


def test_multilabel_label_sets_are_spread_over_the_folds():
    label_sets = [frozenset({"bombing"}), frozenset({"armed_assault"}), frozenset({"bombing", "armed_assault"}), frozenset()]
    examples = [EventExample(f"m{i}", f"Incident report {i}.", event=label_sets[i % 4]) for i in range(40)]
    folds = kfold_splits(examples, 5, seed=3)
    expected = {"bombing": 2, "armed_assault": 2, "armed_assault+bombing": 2, "(empty label set)": 2}
    for fold in folds:
        assert Counter(stratum_of(e) for e in fold.dev) == expected
    assert [ids(f.dev) for f in folds] == [ids(f.dev) for f in kfold_splits(examples, 5, seed=3)]
