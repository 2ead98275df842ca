"""Training features: every example is tokenised once (long examples as overlapping windows; through
``Dataset.map``, cached on disk, so once across runs and folds too), then batched by length and padded per
batch (dynamic padding).

A :class:`TrainingFeature` keeps the sub-word ids, the event target and one BIO label id per sub-word
(``IGNORE_INDEX`` on special tokens and on every position of an example whose actor layer is unlabeled;
an event target of ``IGNORE_INDEX`` marks an example without an event label). The model's masked losses
then train only the heads an example has labels for.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Iterator, Sequence

import datasets
import numpy as np
import tokenizers
import torch

from conflict_events.alignment import IGNORE_INDEX, bio_label_ids
from conflict_events.corpora.hf import to_dataset
from conflict_events.corpora.shift import EntityMention, EntitySubstituter, example_rng
from conflict_events.errors import DataError, Issue, Location
from conflict_events.labels import LabelSchema
from conflict_events.schema import EventExample

logger = logging.getLogger(__name__)

# Batches are formed inside windows of this many batches: shuffled across windows, sorted by length within
# one, so padding stays small while the order still changes every epoch.
LENGTH_GROUP_WINDOW = 50


@dataclass(frozen=True)
class TrainingFeature:
    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    # Multiclass: a class index or IGNORE_INDEX. Multilabel: a 0/1 vector or all IGNORE_INDEX.
    event_target: int | tuple[float, ...]
    role_labels: tuple[int, ...]
    # Which corpus the feature is from: 0 the main corpus, i the i-th auxiliary one (training/multicorpus.py).
    task: int = 0
    # Which example it is a window of (its index in the examples encoded; -1: made by augmentation). Where a
    # feature came from, not what it holds: two features with the same content are equal.
    example: int = field(default=-1, compare=False)

    def __len__(self) -> int:
        return len(self.input_ids)


def _where(example: EventExample) -> Location:
    if example.source is not None:
        return Location(example.source.path, example.source.line, "event")
    return Location(f"example {example.id}", None, "event")


def event_target(example: EventExample, schema: LabelSchema) -> int | tuple[float, ...]:
    names = schema.event_names
    if schema.multilabel:
        if example.event is None:
            return tuple(float(IGNORE_INDEX) for _ in names)
        labels = {example.event} if isinstance(example.event, str) else set(example.event)
        unknown = sorted(labels - set(names))
        if unknown:
            raise DataError(Issue(_where(example), f"unknown event class {unknown[0]!r}; expected one of {names}"))
        return tuple(1.0 if name in labels else 0.0 for name in names)
    if example.event is None:
        return IGNORE_INDEX
    if not isinstance(example.event, str):
        raise DataError(Issue(_where(example), "a multilabel event set in a multiclass task"))
    if example.event not in names:
        raise DataError(Issue(_where(example), f"unknown event class {example.event!r}; expected one of {names}"))
    return names.index(example.event)


def encode_examples(
    examples: Sequence[EventExample],
    tokenizer,
    schema: LabelSchema,
    max_length: int,
    window_overlap: int = 32,
    task: int = 0,
    rows: Sequence[int] | None = None,
) -> list[TrainingFeature]:
    """Tokenise the examples (fast tokenizer, offsets) and attach both layers' targets.

    An example longer than ``max_length`` sub-words becomes overlapping windows (``window_overlap``
    sub-words shared; the tokenizer's own overflow with a stride), so no actor label past the first window
    is lost: every window carries the BIO labels of its sub-words (a span cut by a window edge starts with
    ``B-`` there). The event label belongs to the whole text and goes with the first window only, which is
    what truncation trained before; a later window with no actor layer carries nothing and is left out.

    The windows are computed by :func:`tokenised_examples` (``Dataset.map``, cached on disk), so a second
    run on the same examples, tokenizer and lengths reads them back. ``rows``: the features of these
    examples only (indices into ``examples``, in this order), from the tokenisation of all of
    ``examples``: the folds of a cross-validation pass the whole pool and their rows, so the pool is
    tokenised once for every fold, seed and recipe.
    """
    if not examples:
        return []
    tokenised = tokenised_examples(examples, tokenizer, schema, max_length, window_overlap)
    columns = tokenised.to_dict()
    windows_of: dict[int, list[TrainingFeature]] = defaultdict(list)
    token_types = columns.get("token_type_ids")
    for row, owner in enumerate(columns["example"]):
        target = columns["event_target"][row]
        windows_of[owner].append(
            TrainingFeature(
                input_ids=tuple(columns["input_ids"][row]),
                token_type_ids=tuple(token_types[row]) if token_types is not None else None,
                event_target=tuple(target) if schema.multilabel else target,
                role_labels=tuple(columns["role_labels"][row]),
                task=task,
                example=owner,
            )
        )
    return [feature for owner in (range(len(examples)) if rows is None else rows) for feature in windows_of[owner]]


def tokenised_examples(
    examples: Sequence[EventExample], tokenizer, schema: LabelSchema, max_length: int, window_overlap: int = 32
) -> datasets.Dataset:
    """One row per training window: ``example`` (its index in ``examples``), ``input_ids``,
    ``token_type_ids`` (when the tokenizer makes them), ``event_target``, ``role_labels``.

    Built with ``Dataset.map(batched=True)`` over the examples' texts (``corpora.hf.to_dataset``), the labels
    taken from the examples themselves (:func:`event_target`, as everywhere), and cached in :func:`feature_cache_dir` under a fingerprint of what the windows depend on
    (:func:`features_fingerprint`), so the same examples, tokenizer and lengths are tokenised once, whatever
    the process. The fingerprint is ours, not the one ``datasets`` derives: a dataset built in memory
    (``Dataset.from_list``) is never cached by ``map`` without a cache file, and the hash ``datasets`` takes
    of a tokenizer changes once the tokenizer has been called (it stores its truncation settings;
    huggingface/datasets#5985, #6179), which would miss the cache across runs.
    """
    for example in examples:  # the errors encode_examples always raised, before anything is written
        _check_roles(example, schema)
        event_target(example, schema)
    stride = window_stride(tokenizer, max_length, window_overlap)
    fingerprint = features_fingerprint(examples, tokenizer, schema, max_length, stride)
    source = to_dataset(examples, schema).select_columns(["text"])
    calls = []

    def windows(batch: dict, indices: list[int]) -> dict:
        calls.append(len(indices))
        return _windows(batch, indices, examples, tokenizer, schema, max_length, stride)

    cache_file = feature_cache_dir() / f"features-{fingerprint}.arrow"
    arguments = dict(batched=True, with_indices=True, remove_columns=source.column_names, new_fingerprint=fingerprint)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tokenised = source.map(windows, cache_file_name=str(cache_file), desc=f"tokenising {len(examples)} examples", **arguments)
    except OSError as problem:  # an unwritable cache costs the cache, not the run
        logger.warning("feature cache %s not usable (%s); tokenising in memory", cache_file.parent, problem)
        tokenised = source.map(windows, keep_in_memory=True, **arguments)
    if calls:
        logger.info("tokenised %d examples into %d features (max_length %d): %s", len(examples), len(tokenised), max_length, cache_file)
    else:
        logger.info("features of %d examples from cache (%d features, max_length %d): %s", len(examples), len(tokenised), max_length, cache_file)
    return tokenised


def window_stride(tokenizer, max_length: int, window_overlap: int) -> int:
    """The sub-words consecutive windows share: ``window_overlap``, at most half a window."""
    return min(window_overlap, max(0, (max_length - tokenizer.num_special_tokens_to_add(pair=False)) // 2))


def _windows(
    batch: dict, indices: list[int], examples: Sequence[EventExample], tokenizer, schema: LabelSchema, max_length: int, stride: int
) -> dict:
    """The map function: a batch of texts (rows ``indices`` of ``examples``) -> their training windows, with
    the labels of those examples (:func:`event_target`, :func:`bio_label_ids`)."""
    encoded = tokenizer(
        batch["text"],
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    owners = encoded["overflow_to_sample_mapping"]
    token_types = encoded.get("token_type_ids")
    unlabeled = tuple(float(IGNORE_INDEX) for _ in schema.event_names) if schema.multilabel else IGNORE_INDEX
    out: dict[str, list] = {"example": [], "input_ids": [], "event_target": [], "role_labels": []}
    if token_types is not None:
        out["token_type_ids"] = []
    for row, owner in enumerate(owners):
        first_window = row == 0 or owners[row - 1] != owner
        example = examples[indices[owner]]
        if not first_window and example.actors is None:
            continue
        offsets = [tuple(offset) for offset in encoded["offset_mapping"][row]]
        target = event_target(example, schema) if first_window else unlabeled
        out["example"].append(indices[owner])
        out["input_ids"].append(encoded["input_ids"][row])
        out["event_target"].append(list(target) if schema.multilabel else target)
        out["role_labels"].append(bio_label_ids(offsets, example.actors, schema.bio_tags))
        if token_types is not None:
            out["token_type_ids"].append(token_types[row])
    return out


def feature_cache_dir() -> Path:
    """Where :func:`tokenised_examples` keeps its cache files: ``conflict-events-features`` in the
    ``datasets`` cache (``HF_DATASETS_CACHE``, by default ``~/.cache/huggingface/datasets``; read when
    called, so a test or a job can move it). Each file is a few MB at most; delete the folder at any time."""
    return Path(datasets.config.HF_DATASETS_CACHE) / "conflict-events-features"


def features_fingerprint(examples: Sequence[EventExample], tokenizer, schema: LabelSchema, max_length: int, stride: int) -> str:
    """What the windows depend on: the examples' text and labels in order, the label schema, the tokenizer
    (its serialised vocabulary, normaliser and special tokens, without the truncation and padding state a
    call leaves behind; the ``tokenizers`` release), ``max_length``, the stride, and the source of the code
    that makes the windows (so a change to it makes new cache files, never reads stale ones)."""
    digest = hashlib.sha256()
    identity = {
        "code": _code_identity(),
        "tokenizers": tokenizers.__version__,
        "schema": schema.to_json(),
        "tokenizer": _tokenizer_identity(tokenizer),
        "max_length": max_length,
        "stride": stride,
    }
    digest.update(json.dumps(identity, sort_keys=True).encode())
    for example in examples:
        event = sorted(example.event) if isinstance(example.event, frozenset) else example.event
        actors = None if example.actors is None else [[a.role, a.char_start, a.char_end] for a in example.actors]
        digest.update(json.dumps([example.text, event, actors], ensure_ascii=False).encode())
    return digest.hexdigest()


def _code_identity() -> str:
    try:
        sources = [inspect.getsource(sys.modules[function.__module__]) for function in (bio_label_ids, to_dataset)]
        sources += [inspect.getsource(function) for function in (_windows, event_target)]
    except (OSError, TypeError):  # installed without sources: the release stands for the code
        sources = [f"conflict-events {package_version('conflict-events')}"]
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()


def _tokenizer_identity(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        serialised = json.dumps(state)  # the Rust side writes its fields and vocabulary in a fixed order
    else:  # a slow tokenizer has no serialised form; its vocabulary is what it maps text to
        serialised = json.dumps(sorted(tokenizer.get_vocab().items()))
    return {
        "class": type(tokenizer).__name__,
        "inputs": list(tokenizer.model_input_names),
        "truncation_side": getattr(tokenizer, "truncation_side", "right"),
        "sha256": hashlib.sha256(serialised.encode()).hexdigest(),
    }


def _check_roles(example: EventExample, schema: LabelSchema) -> None:
    unknown = sorted({span.role for span in example.actors or ()} - set(schema.role_tags))
    if unknown:
        raise DataError(Issue(_where(example), f"unknown actor role {unknown[0]!r}; expected one of {schema.role_tags}"))


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches of similar length; the same ``seed`` always gives the same batches, so an epoch
    can be replayed exactly on resume (the trainer uses ``training.seed + epoch``)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)).tolist()
    window = batch_size * LENGTH_GROUP_WINDOW
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches)).tolist()]


def steps_per_epoch(num_features: int, batch_size: int, max_steps: int | None) -> int:
    steps = math.ceil(num_features / batch_size)
    return min(steps, max_steps) if max_steps is not None else steps


def collate(features: Sequence[TrainingFeature], pad_token_id: int, multilabel: bool) -> dict[str, torch.Tensor]:
    """Pad to the longest feature of the batch; padded positions are masked and carry IGNORE_INDEX."""
    width = max(len(feature) for feature in features)
    size = len(features)
    input_ids = torch.full((size, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((size, width), dtype=torch.long)
    role_labels = torch.full((size, width), IGNORE_INDEX, dtype=torch.long)
    with_types = features[0].token_type_ids is not None
    token_type_ids = torch.zeros((size, width), dtype=torch.long) if with_types else None
    for row, feature in enumerate(features):
        length = len(feature)
        input_ids[row, :length] = torch.tensor(feature.input_ids)
        attention_mask[row, :length] = 1
        role_labels[row, :length] = torch.tensor(feature.role_labels)
        if token_type_ids is not None:
            token_type_ids[row, :length] = torch.tensor(feature.token_type_ids)
    if multilabel:
        event_labels = torch.tensor([feature.event_target for feature in features], dtype=torch.float)
    else:
        event_labels = torch.tensor([feature.event_target for feature in features], dtype=torch.long)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "event_labels": event_labels,
        "role_labels": role_labels,
    }
    if token_type_ids is not None:
        batch["token_type_ids"] = token_type_ids
    return batch


def class_weights(features: Sequence[TrainingFeature], num_classes: int) -> torch.Tensor:
    """Inverse-frequency event class weights ``n / (k * count)`` (multiclass; unseen classes get 1)."""
    counts = np.zeros(num_classes)
    for feature in features:
        if isinstance(feature.event_target, int) and feature.event_target != IGNORE_INDEX:
            counts[feature.event_target] += 1
    labeled = counts.sum()
    seen = counts > 0
    weights = np.ones(num_classes)
    weights[seen] = labeled / (seen.sum() * counts[seen])
    return torch.tensor(weights, dtype=torch.float)


# --- actor swap augmentation -------------------------------------------------------------------
@dataclass(frozen=True)
class _Mention:
    role_label_b: int
    role_label_i: int
    ids: tuple[int, ...]
    types: tuple[int, ...] | None


def _mentions(feature: TrainingFeature, schema_bio: list[str]) -> list[tuple[int, int, str]]:
    """``(first, end_exclusive, role)`` of each labeled span, by sub-word position."""
    spans = []
    position = 0
    labels = feature.role_labels
    while position < len(labels):
        label = labels[position]
        tag = schema_bio[label] if label != IGNORE_INDEX else "O"
        if tag.startswith("B-"):
            end = position + 1
            while end < len(labels) and labels[end] != IGNORE_INDEX and schema_bio[labels[end]] == f"I-{tag[2:]}":
                end += 1
            spans.append((position, end, tag[2:]))
            position = end
        else:
            position += 1
    return spans


class ActorSwapper:
    """Span-level augmentation on already tokenised features: with probability ``p`` each actor mention is
    replaced by the sub-words of another training mention of the same role (labels rebuilt to B-/I-).
    The event target is unchanged; the result is truncated to ``max_length`` keeping the final [SEP]."""

    def __init__(self, features: Sequence[TrainingFeature], schema: LabelSchema, probability: float, max_length: int):
        self.probability = probability
        self.max_length = max_length
        self.bio = schema.bio_tags
        self.pool: dict[str, list[_Mention]] = {}
        for feature in features:
            for first, end, role in _mentions(feature, self.bio):
                types = feature.token_type_ids[first:end] if feature.token_type_ids is not None else None
                mention = _Mention(self.bio.index(f"B-{role}"), self.bio.index(f"I-{role}"), feature.input_ids[first:end], types)
                self.pool.setdefault(role, []).append(mention)

    def __call__(self, feature: TrainingFeature, rng: np.random.Generator) -> TrainingFeature:
        if feature.task != 0:  # an auxiliary corpus's roles are not this schema's (training/multicorpus.py)
            return feature
        spans = _mentions(feature, self.bio)
        if not spans or self.probability == 0:
            return feature
        ids, types, labels = [], [], []
        cursor = 0
        for first, end, role in spans:
            ids += feature.input_ids[cursor:first]
            labels += feature.role_labels[cursor:first]
            if feature.token_type_ids is not None:
                types += feature.token_type_ids[cursor:first]
            if rng.random() < self.probability and len(self.pool.get(role, ())) > 1:
                mention = self.pool[role][int(rng.integers(len(self.pool[role])))]
                ids += mention.ids
                labels += [mention.role_label_b] + [mention.role_label_i] * (len(mention.ids) - 1)
                if feature.token_type_ids is not None:
                    types += [0] * len(mention.ids)
            else:
                ids += feature.input_ids[first:end]
                labels += feature.role_labels[first:end]
                if feature.token_type_ids is not None:
                    types += feature.token_type_ids[first:end]
            cursor = end
        ids += feature.input_ids[cursor:]
        labels += feature.role_labels[cursor:]
        if feature.token_type_ids is not None:
            types += feature.token_type_ids[cursor:]
        if len(ids) > self.max_length:
            # Keep the closing special token; a span cut at the edge keeps its B-/I- prefix, which is valid.
            ids = ids[: self.max_length - 1] + ids[-1:]
            labels = labels[: self.max_length - 1] + labels[-1:]
            types = types[: self.max_length - 1] + types[-1:] if types else types
        return TrainingFeature(
            tuple(ids), tuple(types) if feature.token_type_ids is not None else None, feature.event_target, tuple(labels)
        )


# --- sub-word masking augmentation --------------------------------------------------------------
class TokenMasker:
    """Input noise on already tokenised features: with probability ``p`` each sub-word, special tokens
    excepted, is replaced by the tokenizer's mask token. Labels stay as they are (a masked sub-word of an
    actor keeps its B-/I- tag, so the role must be read from the words around it), the length too, so spans
    and windows are untouched. Sub-words rather than whole words: the ids alone do not say where a word ends
    for every tokenizer, and a name's remaining sub-words are the partial cue the model should learn to do
    without."""

    def __init__(self, probability: float, mask_id: int, special_ids: Sequence[int]):
        self.probability = probability
        self.mask_id = mask_id
        self.special_ids = np.asarray(sorted(set(special_ids)), dtype=np.int64)

    def __call__(self, feature: TrainingFeature, rng: np.random.Generator) -> TrainingFeature:
        ids = np.asarray(feature.input_ids, dtype=np.int64)
        # One draw per position whatever is masked, so an epoch's stream does not depend on the texts.
        hits = (rng.random(len(ids)) < self.probability) & ~np.isin(ids, self.special_ids)
        if not hits.any():
            return feature
        ids[hits] = self.mask_id
        return replace(feature, input_ids=tuple(ids.tolist()))


# --- entity substitution augmentation ----------------------------------------------------------
class EntityAugmenter:
    """Example-level augmentation of tokenised features: with probability ``p`` a feature's example gets its
    named entities substituted (``corpora/shift.py``: country, demonym, city, organisation, leader, ...,
    with actor spans moved) and is tokenised again, labels rebuilt from the moved spans by the same
    alignment as every feature (:func:`_windows`). Every example qualifies, class-only and unlabeled ones
    too. The draw and the replacements come from a stream of the feature's example and the epoch alone
    (:func:`~conflict_events.corpora.shift.example_rng`), so a resumed epoch substitutes exactly as the first
    try did, whatever the batch order. A text that grows past ``max_length`` keeps its first window (as
    truncation would); an example encoded as several windows (a long document) is left as it is."""

    def __init__(
        self,
        examples: Sequence[EventExample],
        features: Sequence[TrainingFeature],
        substituter: EntitySubstituter,
        tokenizer,
        schema: LabelSchema,
        probability: float,
        max_length: int,
        window_overlap: int,
        seed: int,
    ):
        self.examples = examples
        self.substituter = substituter
        self.tokenizer = tokenizer
        self.schema = schema
        self.probability = probability
        self.max_length = max_length
        self.stride = window_stride(tokenizer, max_length, window_overlap)
        self.seed = seed
        self.windows = Counter(feature.example for feature in features if feature.task == 0)
        if self.windows and max(self.windows) >= len(examples):
            raise ValueError(f"features of example {max(self.windows)} but {len(examples)} examples: pass what the features were encoded from")
        self._mentions: dict[int, list[EntityMention]] = {}  # the names of each example, found once

    def mentions(self, index: int) -> list[EntityMention]:
        if index not in self._mentions:
            self._mentions[index] = self.substituter.mentions(self.examples[index].text)
        return self._mentions[index]

    def substituted(self, index: int, epoch: int) -> EventExample | None:
        """Example ``index`` as epoch ``epoch`` trains on it; None when it is not substituted."""
        rng = example_rng(self.seed, "entity-substitution", epoch, index)
        if rng.random() >= self.probability or self.windows.get(index) != 1:
            return None
        mentions = self.mentions(index)
        if not mentions:
            return None
        result = self.substituter(self.examples[index], rng, mentions)
        return result.example if result.applied else None

    def __call__(self, batch: Sequence[TrainingFeature], epoch: int) -> list[TrainingFeature]:
        out = list(batch)
        if self.probability == 0:
            return out
        positions, changed = [], []
        for position, feature in enumerate(batch):
            if feature.task != 0 or feature.example < 0:  # an auxiliary corpus's, or one made by augmentation
                continue
            example = self.substituted(feature.example, epoch)
            if example is not None:
                positions.append(position)
                changed.append(example)
        if not changed:
            return out
        rows = _windows(
            {"text": [e.text for e in changed]}, list(range(len(changed))), changed, self.tokenizer, self.schema,
            self.max_length, self.stride,
        )
        first: dict[int, int] = {}
        for row, owner in enumerate(rows["example"]):
            first.setdefault(owner, row)
        for owner, position in enumerate(positions):
            row = first[owner]
            types = rows.get("token_type_ids")
            target = rows["event_target"][row]
            out[position] = TrainingFeature(
                input_ids=tuple(rows["input_ids"][row]),
                token_type_ids=tuple(types[row]) if types is not None else None,
                event_target=tuple(target) if self.schema.multilabel else target,
                role_labels=tuple(rows["role_labels"][row]),
                task=0,
                example=batch[position].example,
            )
        return out


@dataclass
class FeatureBatches:
    """The trainer's batch source for fine-tuning: batches of similar length, shuffled per epoch with
    ``seed + epoch`` (so a resumed epoch replays the same order), padded per batch by :func:`collate`."""

    features: Sequence[TrainingFeature]
    batch_size: int
    seed: int
    max_steps: int | None
    pad_token_id: int
    multilabel: bool

    @property
    def steps_in_epoch(self) -> int:
        return steps_per_epoch(len(self.features), self.batch_size, self.max_steps)

    def batches(self, epoch: int) -> Iterator[list[TrainingFeature]]:
        order = length_grouped_batches([len(f) for f in self.features], self.batch_size, self.seed + epoch)
        for indices in order[: self.steps_in_epoch]:
            yield [self.features[i] for i in indices]

    def collate(self, batch: Sequence[TrainingFeature]) -> dict[str, torch.Tensor]:
        return collate(batch, self.pad_token_id, self.multilabel)
