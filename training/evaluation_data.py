"""The evaluation set every promotion decision is scored on, and the identities that make scores comparable.

- :func:`text_digest`: a sentence's identity for leakage checks (the same words, however typeset: the key
  the corpus validation uses for near-duplicates).
- :func:`example_digest`: a sentence *with its labels*; :class:`EvaluationSet` ``.digest`` is the digest of
  its examples' digests (order-free), computed on load and recorded with every metric scored on it, so two
  scores are comparable exactly when their digests are equal.
- ``trained_on.json`` in a saved model directory: the text digests of what the model trained on, written by
  the trainer next to the weights, so every copy of the model (``best/``, the logged pyfunc, a download)
  can tell which evaluation examples it has seen.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from conflict_events.config import Config
from conflict_events.corpora.corpus import load_corpus, read_files
from conflict_events.corpora.normalise import near_duplicate_key
from conflict_events.corpora.shift import shift_split
from conflict_events.errors import ConflictEventsError, DataError, Issue, Location
from conflict_events.schema import EventExample

logger = logging.getLogger(__name__)

TRAINED_ON_FILE = "trained_on.json"
# How many overlapping examples an error or warning lists by id.
SHOWN_OVERLAPS = 10


def text_digest(text: str) -> str:
    return hashlib.sha256(near_duplicate_key(text).encode("utf-8")).hexdigest()[:16]


def example_digest(example: EventExample) -> str:
    event = example.event if isinstance(example.event, str) or example.event is None else sorted(example.event)
    actors = None if example.actors is None else sorted((a.role, a.char_start, a.char_end) for a in example.actors)
    payload = json.dumps([near_duplicate_key(example.text), event, actors], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def set_digest(examples: Sequence[EventExample]) -> str:
    joined = "\n".join(sorted(example_digest(example) for example in examples))
    return "sha256:" + hashlib.sha256(joined.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class EvaluationSet:
    """``name``: ``test``, ``dev`` or ``file``; ``description`` says where the examples came from."""

    name: str
    description: str
    examples: tuple[EventExample, ...]
    digest: str

    @classmethod
    def of(cls, name: str, description: str, examples: Sequence[EventExample]) -> "EvaluationSet":
        return cls(name, description, tuple(examples), set_digest(examples))

    def without(self, digests: set[str], reason: str) -> "EvaluationSet":
        """The set minus the examples whose text digest is in ``digests`` (a new identity)."""
        kept = [example for example in self.examples if text_digest(example.text) not in digests]
        if len(kept) == len(self.examples):
            return self
        return EvaluationSet.of(self.name, f"{self.description}, without {len(self.examples) - len(kept)} {reason}", kept)

    def summary(self) -> str:
        return f"{self.name} ({self.description}; {len(self.examples)} sentences, {self.digest})"


class SplitUnavailableError(ConflictEventsError):
    """The requested split is not configured or its files are absent."""


def require_split(config: Config, split: str) -> None:
    """Raise :class:`SplitUnavailableError` when ``split`` is not configured or a file of it is missing.
    The dev split is always available (carved from train when not configured)."""
    split_files = config.data.split(split)
    if split_files is None:
        if split == "dev":
            return
        raise SplitUnavailableError(f"split '{split}' is not available: the config has no data.{split}")
    for kind, relative in split_files.model_dump().items():
        if relative is not None and not config.data.exists(kind, relative):
            raise SplitUnavailableError(
                f"split '{split}' is not available: {relative} not found under {config.data.root}"
            )


def load_split(config: Config, split: str) -> list[EventExample]:
    require_split(config, split)
    examples = getattr(load_corpus(config), split)
    if not examples:
        raise SplitUnavailableError(f"split '{split}' is not available: it has no examples")
    return list(examples)


def load_named_set(config: Config, split: str) -> EvaluationSet:
    """``split`` (train, dev, test, file: ``evaluation.files``, or dev_shifted: the dev split with its entities
    substituted as ``data.shifted_dev`` says, enabled or not) as an :class:`EvaluationSet`."""
    if split == "dev_shifted":
        settings = config.data.shifted_dev
        shifted = shift_split(load_split(config, "dev"), settings)
        description = (
            f"{_dev_description(config)}, entities substituted (seed {settings.seed}: {shifted.changed} sentences "
            f"changed, {shifted.substitutions} substitutions)"
        )
        return EvaluationSet.of("dev_shifted", description, shifted.examples)
    if split == "file":
        if config.evaluation.files is None:
            raise SplitUnavailableError("split 'file' is not available: the config has no evaluation.files")
        return load_evaluation_set(config.model_copy(update={"evaluation": config.evaluation.model_copy(update={"split": "file"})}))
    examples = load_split(config, split)
    return EvaluationSet.of(split, _dev_description(config) if split == "dev" else f"the configured {split} split", examples)


def evaluation_split_name(config: Config) -> str:
    """What ``evaluation.split: auto`` means for this config: ``test`` when its files are present, else ``dev``."""
    choice = config.evaluation.split
    if choice != "auto":
        return choice
    try:
        require_split(config, "test")
    except SplitUnavailableError:
        return "dev"
    return "test"


def load_evaluation_set(config: Config, dev: Sequence[EventExample] | None = None) -> EvaluationSet:
    """The configured evaluation set. ``dev`` is the dev split the caller already holds (a training run's);
    otherwise the dev split is read from the config (carved from train when not configured)."""
    name = evaluation_split_name(config)
    if name == "file":
        files = config.evaluation.files
        assert files is not None  # the config checks that split 'file' names files
        split = read_files(config, "evaluation", files)
        if any(issue.severity == "error" for issue in split.issues):
            raise DataError(split.issues)
        if not split.examples:
            raise DataError(Issue(Location(", ".join(files.paths())), "the evaluation file has no examples"))
        return EvaluationSet.of("file", ", ".join(files.paths()), split.examples)
    if name == "dev" and dev is not None:
        return EvaluationSet.of("dev", _dev_description(config), dev)
    examples = load_split(config, name)
    return EvaluationSet.of(name, _dev_description(config) if name == "dev" else "the configured test split", examples)


def _dev_description(config: Config) -> str:
    if config.data.dev is not None:
        return "the configured dev split"
    split = config.data.dev_split
    return f"dev carved from train (fraction {split.fraction}, seed {split.seed})"


# --- what a model trained on -------------------------------------------------------------------------
def write_trained_on(directory: Path, examples: Sequence[EventExample]) -> None:
    digests = sorted({text_digest(example.text) for example in examples})
    (Path(directory) / TRAINED_ON_FILE).write_text(json.dumps({"sentences": len(examples), "text_digests": digests}), encoding="utf-8")


def read_trained_on(directory: Path | None) -> set[str] | None:
    """The text digests a saved model trained on; None when the model does not say (older models)."""
    if directory is None or not (Path(directory) / TRAINED_ON_FILE).is_file():
        return None
    return set(json.loads((Path(directory) / TRAINED_ON_FILE).read_text(encoding="utf-8"))["text_digests"])


def overlapping(examples: Sequence[EventExample], trained_on: set[str] | None) -> list[EventExample]:
    """The examples whose text the model trained on."""
    if not trained_on:
        return []
    return [example for example in examples if text_digest(example.text) in trained_on]


def describe_overlap(overlap: Sequence[EventExample], total: int) -> str:
    shown = ", ".join(example.id for example in overlap[:SHOWN_OVERLAPS])
    more = f" and {len(overlap) - SHOWN_OVERLAPS} more" if len(overlap) > SHOWN_OVERLAPS else ""
    return f"{len(overlap)} of {total} sentences ({shown}{more})"


def warn_if_trained_on(model_name: str, directory: Path | None, examples: Sequence[EventExample], split: str) -> list[EventExample]:
    """Log a warning when the model at ``directory`` trained on some of ``examples``; returns them."""
    overlap = overlapping(examples, read_trained_on(directory))
    if overlap:
        logger.warning(
            "%s trained on %s of the %s split it is scored on: its %s scores are inflated",
            model_name, describe_overlap(overlap, len(examples)), split, split,
        )
    return overlap
