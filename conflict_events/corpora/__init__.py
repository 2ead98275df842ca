"""Corpus readers, the CAMEO merge, validation, statistics and the dev split.

Public API (details in each module):

- ``load_corpus(config, strict=True) -> Corpus`` with ``.train``, ``.dev``, ``.test``, ``.issues``,
  ``.merges``, ``.policy_report`` (what ``data.policy`` dropped, :mod:`~conflict_events.corpora.policy`);
  ``load_split(config, name)``; ``read_split(config, name)`` (never raises);
- readers returning ``ReadResult(examples, issues)``: ``read_event_tsv``, ``read_conll``,
  ``read_jsonl``; ``write_jsonl(examples, path)``; ``to_dataset(examples, labels)`` / ``from_dataset`` (Hugging
  Face ``datasets``, :mod:`~conflict_events.corpora.hf`);
- ``merge_layers`` (CAMEO class + actor files), ``carve_dev_split``, ``corpus_stats``.
"""

from conflict_events.corpora.conll import read_conll
from conflict_events.corpora.corpus import Corpus, SplitData, load_corpus, load_split, read_split
from conflict_events.corpora.hf import from_dataset, to_dataset
from conflict_events.corpora.jsonl import read_jsonl, write_jsonl
from conflict_events.corpora.merge import MergeReport, merge_layers
from conflict_events.corpora.split import carve_dev_split
from conflict_events.corpora.stats import corpus_stats
from conflict_events.corpora.textfile import ReadResult
from conflict_events.corpora.tsv import read_event_tsv

__all__ = [
    "Corpus",
    "MergeReport",
    "ReadResult",
    "SplitData",
    "carve_dev_split",
    "corpus_stats",
    "from_dataset",
    "load_corpus",
    "load_split",
    "merge_layers",
    "read_conll",
    "read_event_tsv",
    "read_jsonl",
    "read_split",
    "to_dataset",
    "write_jsonl",
]
