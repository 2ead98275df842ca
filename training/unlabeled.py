"""Unlabeled news for distillation (``distill.unlabeled``): sentences that only the teachers' soft targets
train on.

Each entry of ``distill.unlabeled`` names an archive (a file, folder or glob relative to ``data.root``) that
is read as ``predict`` reads it (:func:`conflict_events.sources.read_documents`: IndiaPoliceEvents ``.tsv``
articles from their first column, ``.txt``, ``.jsonl``/``.csv``/``.parquet`` with ``text_field``) and cut
into sentences by the predictor's splitter (:class:`~conflict_events.sentences.SentenceSplitter`). A
sentence is dropped, and counted, when it

1. has fewer than ``min_words`` whitespace words (bylines, headings, table debris: as ``pretrain`` does);
2. has more than ``model.max_length`` sub-words with the special tokens: training keeps only the first
   window of an example without an actor layer (``training/data.py``), so the rest would be cut off;
3. repeats an earlier unlabeled sentence (wire copy repeats sentences across articles);
4. is the text of a labeled example of the corpus (train, dev or test; compared by the corpus's
   near-duplicate key, ``corpora.normalise.near_duplicate_key``): a dev or test sentence must never reach
   training through this door, and a train sentence is there already with its gold labels.

Of the rest, up to ``max_sentences`` are drawn with ``random.Random(seed)`` (the same file and seed give the
same sentences) and kept in archive order. They become :class:`EventExample` s with no event label and no
actor layer (``unlabeled:<doc id>:<sentence index>``), added to the training split only
(:func:`with_unlabeled`): the gold loss masks both heads on them and the teachers' soft targets are all
they train on. Optional self-training (``distill.pseudo_label_threshold``, multiclass only,
:func:`pseudo_label`): a sentence whose teacher-ensemble event probability reaches the threshold gets the
ensemble's class as a hard event label; the actor layer stays unlabeled.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from conflict_events.config import Config, UnlabeledTextConfig
from conflict_events.corpora.normalise import near_duplicate_key
from conflict_events.errors import ConfigError, DataError, Issue, Location
from conflict_events.model import LoadedModel
from conflict_events.prediction import predict_texts
from conflict_events.schema import Document, EventExample, SourceRef
from conflict_events.sentences import SentenceSplitter
from conflict_events.sources import BadRecord, ReaderSettings, read_documents, scan_inputs
from conflict_events.training.trainer import Splits

logger = logging.getLogger(__name__)

ID_PREFIX = "unlabeled"
# Bad records named in the log per source; the rest are only counted.
SHOWN_BAD_RECORDS = 5


@dataclass
class UnlabeledSourceStats:
    """What one ``distill.unlabeled`` entry gave, step by step (the module docstring has the rules)."""

    path: str
    files: list[str] = field(default_factory=list)
    documents: int = 0
    bad_records: int = 0
    sentences: int = 0
    short: int = 0
    long: int = 0
    repeats: int = 0
    in_labeled_data: int = 0
    kept: int = 0
    sampled: int = 0
    pseudo_labeled: int = 0


COUNTS = ("documents", "bad_records", "sentences", "short", "long", "repeats", "in_labeled_data", "kept", "sampled", "pseudo_labeled")


@dataclass
class UnlabeledStats:
    sources: list[UnlabeledSourceStats] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(source, name) for source in self.sources)

    def params(self) -> dict[str, int]:
        """MLflow params: totals as ``unlabeled.<count>``, each entry's as ``unlabeled.<i>.<count>``."""
        params = {f"unlabeled.{name}": self.total(name) for name in COUNTS}
        for index, source in enumerate(self.sources):
            params.update({f"unlabeled.{index}.{name}": getattr(source, name) for name in COUNTS})
        return params

    def summary(self) -> str:
        return (
            f"{self.total('sentences')} sentences read from {self.total('documents')} documents "
            f"({self.total('bad_records')} unreadable records); dropped {self.total('short')} short, "
            f"{self.total('long')} long, {self.total('repeats')} repeats, {self.total('in_labeled_data')} in the "
            f"labeled data; {self.total('kept')} kept, {self.total('sampled')} sampled into training, "
            f"{self.total('pseudo_labeled')} of them pseudo-labeled"
        )


def unlabeled_files(config: Config) -> list[list[Path]]:
    """The files of each ``distill.unlabeled`` entry (reading order), or a ConfigError naming the entry."""
    files = []
    for index, entry in enumerate(config.distill.unlabeled):
        resolved = config.data.resolve(entry.path)
        try:
            files.append(list(scan_inputs([resolved]).files))
        except DataError as error:
            reasons = "; ".join(issue.message for issue in error.issues)
            raise ConfigError(
                f"distill.unlabeled[{index}].path '{entry.path}': {reasons} ({resolved}; paths are relative to data.root)"
            ) from None
    return files


def read_unlabeled(
    config: Config, tokenizer, labeled: Iterable[EventExample]
) -> tuple[list[EventExample], UnlabeledStats]:
    """The sampled unlabeled sentences of every ``distill.unlabeled`` entry, and the counts of each step.
    ``labeled``: every labeled example of the corpus (all splits); their texts are never taken."""
    labeled_keys = {near_duplicate_key(example.text) for example in labeled}
    splitter = SentenceSplitter()
    seen: set[str] = set()
    stats = UnlabeledStats()
    examples: list[EventExample] = []
    for index, (entry, files) in enumerate(zip(config.distill.unlabeled, unlabeled_files(config))):
        source = UnlabeledSourceStats(entry.path, [str(path) for path in files])
        stats.sources.append(source)
        kept = _kept_sentences(entry, files, config, tokenizer, splitter, seen, labeled_keys, source)
        source.kept = len(kept)
        if not kept:
            raise DataError(Issue(
                Location(str(config.data.resolve(entry.path)), None, f"distill.unlabeled[{index}]"),
                f"no sentence left to distil on (documents {source.documents}, sentences {source.sentences}, short "
                f"{source.short}, long {source.long}, repeats {source.repeats}, in the labeled data {source.in_labeled_data})",
            ))
        chosen = _sample(len(kept), entry.max_sentences, entry.seed)
        source.sampled = len(chosen)
        examples += [kept[row] for row in chosen]
        logger.info(
            "distill.unlabeled[%d] %s: %d documents, %d sentences, %d kept, %d sampled (seed %d)",
            index, entry.path, source.documents, source.sentences, source.kept, source.sampled, entry.seed,
        )
    return examples, stats


def _kept_sentences(
    entry: UnlabeledTextConfig,
    files: Sequence[Path],
    config: Config,
    tokenizer,
    splitter: SentenceSplitter,
    seen: set[str],
    labeled_keys: set[str],
    stats: UnlabeledSourceStats,
) -> list[EventExample]:
    settings = ReaderSettings(text_field=entry.text_field, max_document_chars=config.inference.max_document_chars)
    candidates: list[tuple[Document, int, str]] = []
    for item in read_documents(files, settings):
        if isinstance(item, BadRecord):
            stats.bad_records += 1
            if stats.bad_records <= SHOWN_BAD_RECORDS:
                logger.warning("distill.unlabeled %s: skipped: %s", entry.path, item.to_json())
            continue
        stats.documents += 1
        for number, span in enumerate(splitter.split(item.text)):
            stats.sentences += 1
            sentence = item.text[span.char_start : span.char_end]
            if len(sentence.split()) < entry.min_words:
                stats.short += 1
            else:
                candidates.append((item, number, sentence))
    max_length = config.model.max_length
    # Truncated one past the limit: enough to tell a long sentence, without the tokenizer's over-length warning.
    lengths = [len(ids) for ids in tokenizer([c[2] for c in candidates], truncation=True, max_length=max_length + 1)["input_ids"]] if candidates else []
    kept = []
    for (document, number, sentence), length in zip(candidates, lengths):
        key = near_duplicate_key(sentence)
        if length > max_length:
            stats.long += 1
        elif key in labeled_keys:
            stats.in_labeled_data += 1
        elif key in seen:
            stats.repeats += 1
        else:
            seen.add(key)
            source = document.source or SourceRef(entry.path, 0)
            kept.append(EventExample(id=f"{ID_PREFIX}:{document.id}:{number}", text=sentence, source=source))
    return kept


def _sample(count: int, limit: int | None, seed: int) -> list[int]:
    if limit is None or count <= limit:
        return list(range(count))
    return sorted(random.Random(seed).sample(range(count), limit))


def pseudo_label(
    examples: Sequence[EventExample], teachers: LoadedModel, threshold: float, batch_size: int, stats: UnlabeledStats
) -> list[EventExample]:
    """Self-training: each example whose teachers' event probability (averaged, temperature 1) reaches
    ``threshold`` gets their class as a hard event label; the others stay unlabeled. Multiclass only
    (checked in the config). ``examples`` are :func:`read_unlabeled`'s, in its order (each source's
    ``sampled`` in turn), which is how the counts reach each source of ``stats``."""
    if teachers.label_schema.multilabel:
        raise ConfigError("distill.pseudo_label_threshold is for multiclass event labels (labels.task: multiclass)")
    if sum(source.sampled for source in stats.sources) != len(examples):
        raise ValueError("pseudo_label: the examples are not those the stats describe")
    owners = [source for source in stats.sources for _ in range(source.sampled)]
    predictions = predict_texts(teachers, [example.text for example in examples], batch_size=batch_size)
    labeled = []
    for example, prediction, owner in zip(examples, predictions, owners):
        if prediction.events and float(prediction.event_scores.max()) >= threshold:
            example = dataclasses.replace(example, event=prediction.events[0])
            owner.pseudo_labeled += 1
        labeled.append(example)
    logger.info("pseudo-labeled %d of %d unlabeled sentences (teacher probability >= %s)",
                sum(e.event is not None for e in labeled), len(labeled), threshold)
    return labeled


def with_unlabeled(splits: Splits, examples: Sequence[EventExample]) -> Splits:
    """``splits`` with ``examples`` added to the training split (and to the pool of a fold); dev, test and
    every other field are left as they are."""
    if not examples:
        return splits
    if splits.pool is None:
        return dataclasses.replace(splits, train=[*splits.train, *examples])
    start = len(splits.pool)
    return dataclasses.replace(
        splits,
        train=[*splits.train, *examples],
        pool=[*splits.pool, *examples],
        train_rows=[*splits.train_rows, *range(start, start + len(examples))],
    )


def labeled_examples(splits: Splits) -> list[EventExample]:
    """Every example of the splits (train, dev, test, and any other list of examples a split set carries,
    such as a shifted dev set): the texts unlabeled sentences must not repeat."""
    examples: list[EventExample] = []
    for item in dataclasses.fields(splits):
        value = getattr(splits, item.name)
        if item.name != "pool" and isinstance(value, list) and value and isinstance(value[0], EventExample):
            examples += value
    return examples
