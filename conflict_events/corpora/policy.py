"""``data.policy``: removing what validation would refuse, for upstream files that cannot be edited.

A published benchmark (SATP, re3d) has sentences repeated with different labels and dev sentences that are
also in train. Editing the files would make every score incomparable with published numbers, and refusing
to load them (the ``error`` default, right for a corpus one owns) makes them unusable. So the policy removes
examples at load time, always on the side that keeps the published evaluation data intact:

- :func:`drop_leakage` (``leakage: drop_from_earlier_split``): a sentence that also occurs in a later split
  (train < dev < test; identical text or the same words, as leakage validation matches) is removed from the
  earlier split. Test is never changed; dev only loses what is also in test. Each split is compared with the
  later splits *as read*, so the result does not depend on the order the removals are made in.
- :func:`resolve_conflicting_duplicates` (``conflicting_duplicates``): a sentence repeated in one file with
  different labels (same match key, as duplicate validation groups them). ``drop`` removes every copy,
  since nothing says which label is right; ``keep_first`` keeps the first copy, for files whose first
  annotation is known to be the careful one. Copies with the first copy's labels are left to
  :func:`~conflict_events.corpora.validation.collapse_duplicates`, which keeps one with a warning as before.

Every removal is a :class:`PolicyDrop`: a warning naming the removed line and what it collided with, and a
count in :class:`PolicyReport` (``Corpus.policy_report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conflict_events.config import DataPolicyConfig
from conflict_events.corpora.normalise import match_key
from conflict_events.corpora.textfile import warning
from conflict_events.corpora.validation import (
    SentenceIndex,
    conflicting_duplicate_text,
    describe_source,
    label_signature,
    labels_text,
    where,
)
from conflict_events.errors import Issue
from conflict_events.schema import EventExample

LEAKAGE = "leakage"
CONFLICTING_DUPLICATES = "conflicting_duplicates"
DROP_KINDS = (LEAKAGE, CONFLICTING_DUPLICATES)


@dataclass(frozen=True)
class PolicyDrop:
    """One example the policy removed. ``collided_with``: the later splits it leaked into (leakage only)."""

    kind: str
    split: str
    issue: Issue
    collided_with: tuple[str, ...] = ()


@dataclass
class PolicyReport:
    """What ``data.policy`` removed while loading a corpus, per kind and split."""

    settings: DataPolicyConfig
    splits: tuple[str, ...]
    drops: list[PolicyDrop] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether any policy other than ``error`` is configured (only then can anything be dropped)."""
        return self.settings != DataPolicyConfig()

    def counts(self) -> dict[str, dict[str, int]]:
        """``{kind: {split: dropped}}`` for every kind and split, zeros included, so keys are stable."""
        counts = {kind: dict.fromkeys(self.splits, 0) for kind in DROP_KINDS}
        for drop in self.drops:
            counts[drop.kind][drop.split] = counts[drop.kind].get(drop.split, 0) + 1
        return counts

    def flat(self) -> dict[str, int]:
        """``{"leakage.train": 7, ...}``, e.g. for MLflow metrics."""
        return {f"{kind}.{split}": n for kind, by_split in self.counts().items() for split, n in by_split.items()}

    def summary(self) -> str:
        """E.g. ``policy dropped: 4 from train (leakage with dev), 5 conflicting duplicates from train (drop)``."""
        parts = []
        for split in self.splits:
            leaked = [drop for drop in self.drops if drop.kind == LEAKAGE and drop.split == split]
            if leaked:
                later = [name for name in self.splits if any(name in drop.collided_with for drop in leaked)]
                parts.append(f"{len(leaked)} from {split} (leakage with {'/'.join(later)})")
        for split in self.splits:
            conflicting = sum(drop.kind == CONFLICTING_DUPLICATES and drop.split == split for drop in self.drops)
            if conflicting:
                setting = self.settings.conflicting_duplicates
                parts.append(f"{conflicting} conflicting duplicates from {split} ({setting})")
        return "policy dropped: " + (", ".join(parts) if parts else "nothing")


def resolve_conflicting_duplicates(
    examples: list[EventExample], setting: str, split: str
) -> tuple[list[EventExample], list[PolicyDrop]]:
    """The examples of one file without the copies ``setting`` removes (``error``: all kept)."""
    if setting == "error":
        return examples, []
    copies_by_key: dict[str, list[EventExample]] = {}
    for example in examples:
        copies_by_key.setdefault(match_key(example.text), []).append(example)
    # Keyed by object identity: two copies are equal as values when their labels agree.
    dropped: dict[int, Issue] = {}
    for copies in copies_by_key.values():
        first = copies[0]
        disagreeing = [copy for copy in copies[1:] if label_signature(copy) != label_signature(first)]
        if not disagreeing:
            continue
        for copy in disagreeing if setting == "keep_first" else copies:
            dropped[id(copy)] = _conflict_issue(copy, copies, setting)
    kept = [example for example in examples if id(example) not in dropped]
    drops = [PolicyDrop(CONFLICTING_DUPLICATES, split, dropped[id(e)]) for e in examples if id(e) in dropped]
    return kept, drops


def _conflict_issue(example: EventExample, copies: list[EventExample], setting: str) -> Issue:
    source = where(example)
    reason = f"(data.policy.conflicting_duplicates: {setting})"
    if setting == "keep_first":
        first = describe_source(copies[0], relative_to=source.path)
        message = f"{conflicting_duplicate_text(example, copies[0])}; dropped, {first} is kept {reason}"
    else:
        lines = ", ".join(describe_source(copy, relative_to=source.path) for copy in copies)
        message = f"copies at {lines} disagree on labels; every copy is dropped, this one had {labels_text(example)} {reason}"
    return warning(source.path, source.line, "text", message)


def drop_leakage(
    splits: dict[str, list[EventExample] | None],
) -> tuple[dict[str, list[EventExample] | None], list[PolicyDrop]]:
    """``splits`` (in order, earliest first; ``None``: absent) without what leaks into a later split."""
    names = list(splits)
    indexes = {name: SentenceIndex(examples) for name, examples in splits.items() if examples}
    kept: dict[str, list[EventExample] | None] = {}
    drops: list[PolicyDrop] = []
    for position, name in enumerate(names):
        examples = splits[name]
        later = [(other, indexes[other]) for other in names[position + 1 :] if other in indexes]
        if examples is None or not later:
            kept[name] = examples
            continue
        kept[name] = []
        for example in examples:
            collisions = [(other, found) for other, index in later if (found := index.find(example.text))]
            if not collisions:
                kept[name].append(example)
                continue
            described = "; ".join(f"{kind} of {other} sentence {describe_source(seen)}" for other, (seen, kind) in collisions)
            source = where(example)
            issue = warning(
                source.path,
                source.line,
                "text",
                f"dropped from {name}: {described} (data.policy.leakage: drop_from_earlier_split)",
            )
            drops.append(PolicyDrop(LEAKAGE, name, issue, tuple(other for other, _ in collisions)))
    return kept, drops
