"""Loading the configured corpus: the one entry point training and evaluation use.

Usage::

    from conflict_events.config import load_config
    from conflict_events.corpora import load_corpus

    corpus = load_corpus(load_config("configs/cameo.yaml"))
    corpus.train, corpus.dev, corpus.test      # list[EventExample]; test is None when absent
    corpus.issues                              # warnings (errors raise DataError, see below)
    corpus.merges["train"].summary()           # how the CAMEO class/actor files were paired
    corpus.policy_report.counts()              # what data.policy dropped: {kind: {split: n}}

- ``load_corpus(config)`` reads every configured split, raising :class:`DataError` (carrying every
  issue) if any error was found; ``load_corpus(config, strict=False)`` returns the corpus with its
  errors in ``issues`` instead (that is what ``conflict-events data validate`` prints).
- Each split is ``jsonl`` (canonical format), ``fillers`` (MUC-4 documents with role fillers,
  :mod:`~conflict_events.corpora.muc4`), ``dataset`` (a Hugging Face dataset saved to disk or on the hub,
  :mod:`~conflict_events.corpora.hf`), ``events`` (TSV), ``actors`` (CoNLL BIO), or ``events``
  and ``actors`` together, which are merged sentence by sentence (:mod:`~conflict_events.corpora.merge`).
  Repeated sentences within a file are collapsed (:mod:`~conflict_events.corpora.validation`).
- ``data.policy`` (:mod:`~conflict_events.corpora.policy`) may remove conflicting duplicates (in each file,
  before collapsing) and leaked sentences (from the splits as read, before dev is carved, so a carved dev
  and the debug limit are taken from what remains); each removal is a warning and a count in
  ``corpus.policy_report``. With the default (``error``) nothing is removed and both are errors.
- When ``data.dev`` is not configured, dev is carved from train (:mod:`~conflict_events.corpora.split`,
  ``data.dev_split.fraction`` / ``.seed``). ``data.max_train_examples`` then keeps the first N training
  examples, so the dev split does not change with the debug limit.
- A missing train or dev file is an error; a test split whose files are all absent is simply
  ``None`` (the shared data holds no test files), and a partly absent one is read with a warning.
- ``load_split(config, name)`` reads one split as it is in the files (no carving, no limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from conflict_events.config import Config, DataPolicyConfig, SplitFiles
from conflict_events.corpora.conll import read_conll
from conflict_events.corpora.hf import read_dataset
from conflict_events.corpora.jsonl import read_jsonl
from conflict_events.corpora.merge import MergeReport, merge_layers
from conflict_events.corpora.muc4 import read_muc4
from conflict_events.corpora.policy import PolicyDrop, PolicyReport, drop_leakage, resolve_conflicting_duplicates
from conflict_events.corpora.split import carve_dev_split
from conflict_events.corpora.textfile import ReadResult, warning
from conflict_events.corpora.tsv import read_event_tsv
from conflict_events.corpora.validation import collapse_duplicates, find_leakage
from conflict_events.errors import DataError, Issue
from conflict_events.labels import LabelSchema
from conflict_events.schema import EventExample

SPLIT_NAMES = ("train", "dev", "test")


@dataclass
class SplitData:
    """One split as read from its files, before any dev carving or limit."""

    name: str
    files: list[str]
    examples: list[EventExample] | None  # None: not configured, or (test only) no file present
    issues: list[Issue] = field(default_factory=list)
    merge: MergeReport | None = None
    # What data.policy.conflicting_duplicates removed from this split's files (also warnings in issues).
    policy_drops: list[PolicyDrop] = field(default_factory=list)


@dataclass
class Corpus:
    train: list[EventExample]
    dev: list[EventExample]
    test: list[EventExample] | None
    labels: LabelSchema
    issues: list[Issue] = field(default_factory=list)
    merges: dict[str, MergeReport] = field(default_factory=dict)
    # How dev was obtained, for reports: "configured" or "carved from train (fraction 0.15, seed 13)".
    dev_origin: str = "configured"
    # What data.policy removed (counts per kind and split); empty unless a policy other than `error` is set.
    policy_report: PolicyReport = field(default_factory=lambda: PolicyReport(DataPolicyConfig(), SPLIT_NAMES))

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity != "error"]

    def splits(self) -> dict[str, list[EventExample] | None]:
        return {"train": self.train, "dev": self.dev, "test": self.test}


def load_corpus(config: Config, strict: bool = True) -> Corpus:
    """Read, merge, split and check the configured corpus (see the module docstring)."""
    splits = {name: read_split(config, name) for name in SPLIT_NAMES}
    issues = [issue for split in splits.values() for issue in split.issues]
    report = PolicyReport(config.data.policy, SPLIT_NAMES, [drop for split in splits.values() for drop in split.policy_drops])
    as_read = {name: split.examples for name, split in splits.items()}
    if config.data.policy.leakage == "drop_from_earlier_split":
        as_read, leakage_drops = drop_leakage(as_read)
        report.drops += leakage_drops
        issues += [drop.issue for drop in leakage_drops]
    train = as_read["train"] or []
    if as_read["dev"] is not None:
        dev, dev_origin = as_read["dev"], "configured"
    else:
        linked = _linked_pairs(splits["train"].merge)
        train, dev = carve_dev_split(train, config.data.dev_split.fraction, config.data.dev_split.seed, linked)
        dev_origin = f"carved from train (fraction {config.data.dev_split.fraction}, seed {config.data.dev_split.seed})"
    if config.data.max_train_examples is not None:
        train = train[: config.data.max_train_examples]
    test = as_read["test"]
    issues += find_leakage(train, {"dev": dev, "test": test}, reference_name="train")
    issues += find_leakage(dev, {"test": test}, reference_name="dev")
    corpus = Corpus(
        train=train,
        dev=dev,
        test=test,
        labels=config.label_schema,
        issues=issues,
        merges={name: split.merge for name, split in splits.items() if split.merge is not None},
        dev_origin=dev_origin,
        policy_report=report,
    )
    if strict and corpus.errors:
        raise DataError(corpus.issues)
    return corpus


def load_split(config: Config, name: str) -> list[EventExample] | None:
    """The examples of one configured split as in its files; ``None`` if absent. Raises on errors."""
    split = read_split(config, name)
    if any(issue.severity == "error" for issue in split.issues):
        raise DataError(split.issues)
    return split.examples


def read_split(config: Config, name: str) -> SplitData:
    """Read one split, collecting issues instead of raising."""
    files = config.data.split(name)
    if files is None:
        return SplitData(name, [], None)
    return read_files(config, name, files)


def read_files(config: Config, name: str, files: SplitFiles) -> SplitData:
    """Read the files of a split (or of another named set, e.g. the evaluation file), collecting issues."""
    present, absent_issues = _present_files(config, name, files)
    if name == "test" and not present.paths():
        return SplitData(name, files.paths(), None)
    labels = config.label_schema
    split = SplitData(name, files.paths(), [], absent_issues)
    if present.jsonl is not None:
        result = read_jsonl(config.data.resolve(present.jsonl), labels, present.jsonl)
        split.examples = _read_collapsed(result, split, config)
        return split
    if present.fillers is not None:
        result = read_muc4(config.data.resolve(present.fillers), labels, present.fillers)
        split.examples = _read_collapsed(result, split, config)
        return split
    if present.dataset is not None:
        result = read_dataset(present.dataset, Path(config.data.root), labels, name)
        split.examples = _read_collapsed(result, split, config)
        return split
    event_examples = actor_examples = None
    if present.events is not None:
        result = read_event_tsv(config.data.resolve(present.events), labels, present.events)
        event_examples = _read_collapsed(result, split, config)
    if present.actors is not None:
        result = read_conll(config.data.resolve(present.actors), labels, config.data.repair_bio, present.actors)
        actor_examples = _read_collapsed(result, split, config)
    if event_examples is not None and actor_examples is not None:
        merged = merge_layers(event_examples, actor_examples, present.events, present.actors)
        split.examples, split.merge = merged.examples, merged.report
        split.issues.extend(merged.issues)
    else:
        split.examples = event_examples if event_examples is not None else actor_examples or []
    return split


def _read_collapsed(result: ReadResult, split: SplitData, config: Config) -> list[EventExample]:
    setting = config.data.policy.conflicting_duplicates
    resolved, drops = resolve_conflicting_duplicates(result.examples, setting, split.name)
    examples, duplicate_issues = collapse_duplicates(resolved)
    split.issues.extend(result.issues + [drop.issue for drop in drops] + duplicate_issues)
    split.policy_drops.extend(drops)
    return examples


def _present_files(config: Config, name: str, files: SplitFiles) -> tuple[SplitFiles, list[Issue]]:
    """For the test split, drop files that do not exist (a warning when only some are missing).

    Train and dev files are returned as configured: a missing one is reported by its reader.
    """
    if name != "test":
        return files, []
    kept = {key: value for key, value in files.model_dump().items() if value is not None}
    missing = [key for key, value in kept.items() if not config.data.exists(key, value)]
    if len(missing) == len(kept):
        return files.model_copy(update={key: None for key in kept}), []
    issues = [
        warning(
            kept[key], None, None, f"test file not found ({config.data.resolve(kept[key])}); test is read without it"
        )
        for key in missing
    ]
    return files.model_copy(update={key: None for key in missing}), issues


def _linked_pairs(merge: MergeReport | None) -> list[tuple[str, str]]:
    return [(pair.events_id, pair.actors_id) for pair in merge.revised] if merge else []
