"""Several corpora in one model: each auxiliary corpus (``auxiliary:`` in the config) gets its own heads on
the shared encoder, and its examples train only those heads and the encoder.

The partial-label masking of the joint model, generalised: an example trains the heads of its own corpus,
and within them only the layers it has labels for. Each auxiliary corpus's heads are a
:class:`~conflict_events.model.JointModel` over *the same encoder module* as the main model, so the
shared encoder gets gradients from every corpus while evaluation, prediction and saving of each corpus go
through the ordinary joint-model code (an auxiliary corpus is scored with ``evaluate_loaded`` like the
main one).

- :func:`load_auxiliary` reads each auxiliary corpus (its own config's ``data`` and ``labels``) and builds
  its heads;
- :class:`SharedEncoderModel` is what the optimiser steps: the encoder first (so its parameters are named
  ``encoder.*`` and get layer-wise LR decay), then the main model's and every auxiliary corpus's heads;
- :class:`MultiCorpusBatches` interleaves the corpora's batches (each batch from one corpus, as the label
  shapes differ), in an order fixed by ``seed + epoch`` so a resumed epoch replays it;
- :class:`MultiCorpusObjective` sends each batch to its corpus's heads, the main corpus under the recipe's
  objective, an auxiliary one under the supervised loss scaled by its ``loss_weight``;
- :class:`AuxiliaryHeads` is the trainer plugin that puts the auxiliary heads' weights into the checkpoint,
  so ``--resume`` continues them.

The saved and registered model is the main corpus's alone (``best/``): the auxiliary heads shape the
encoder during training and are not deployed. Each auxiliary corpus's dev metrics are logged every epoch
(``dev_<name>_<metric>``) and those of the best epoch at the end (``best_dev_<name>_<metric>``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from conflict_events.config import Config, load_config
from conflict_events.corpora.corpus import load_corpus
from conflict_events.errors import ConfigError
from conflict_events.model import JointModel, LoadedModel, LossSettings
from conflict_events.schema import EventExample
from conflict_events.training.data import FeatureBatches, TrainingFeature, encode_examples
from conflict_events.training.evaluate import evaluate_adopting_thresholds
from conflict_events.training.objectives import Batch, Objective, StepLoss, SupervisedJointLoss
from conflict_events.training.plugins import TrainerPlugin

TASK_KEY = "task"


@dataclass
class AuxiliaryCorpus:
    name: str
    loaded: LoadedModel  # its heads on the main model's encoder, with the main tokenizer
    train: list[EventExample]
    dev: list[EventExample]
    loss_weight: float
    tune_threshold: bool


def load_auxiliary(config: Config, main: LoadedModel) -> list[AuxiliaryCorpus]:
    """Each ``auxiliary`` corpus read through its own config and given fresh heads on ``main``'s encoder
    (with ``main``'s head settings: one max length and pooling for the shared encoder)."""
    corpora = []
    encoder = main.joint_model.encoder
    for entry in config.auxiliary:
        try:
            own = load_config(entry.config)
        except ConfigError as problem:
            raise ConfigError(f"auxiliary corpus '{entry.name}' (auxiliary[].config): {problem}") from None
        corpus = load_corpus(own)
        if not corpus.train or not corpus.dev:
            raise ConfigError(f"auxiliary corpus '{entry.name}' ({entry.config}) needs a train and a dev split")
        settings = dataclasses.replace(main.settings, class_thresholds=None)
        heads = JointModel(encoder, own.label_schema, settings)
        corpora.append(
            AuxiliaryCorpus(
                entry.name, dataclasses.replace(main, model=heads, directory=None, source=f"auxiliary:{entry.name}"),
                list(corpus.train), list(corpus.dev), entry.loss_weight, own.training.tune_threshold,
            )
        )
    return corpora


class SharedEncoderModel(nn.Module):
    """The main joint model and the auxiliary corpora's heads, one encoder between them."""

    def __init__(self, main: JointModel, auxiliary: dict[str, JointModel]):
        super().__init__()
        # Registered first, so named_parameters() (which lists a shared parameter once) names the encoder's
        # parameters `encoder.*`, what the optimiser's layer-wise groups look for.
        self.encoder = main.encoder
        self.main = main
        self.auxiliary = nn.ModuleDict(auxiliary)


@dataclass
class MultiCorpusBatches:
    """The corpora's batch sources (index 0 the main corpus), their batches shuffled together per epoch."""

    sources: Sequence[FeatureBatches]
    seed: int

    @property
    def steps_in_epoch(self) -> int:
        return sum(source.steps_in_epoch for source in self.sources)

    def batches(self, epoch: int) -> Iterator[list[TrainingFeature]]:
        every = [batch for source in self.sources for batch in source.batches(epoch)]
        order = np.random.default_rng(self.seed + 7919 * epoch).permutation(len(every))
        for index in order:
            yield every[index]

    def collate(self, batch: Sequence[TrainingFeature]) -> dict[str, torch.Tensor]:
        task = batch[0].task
        tensors = self.sources[task].collate(batch)
        tensors[TASK_KEY] = torch.tensor(task)
        return tensors


class MultiCorpusObjective:
    """A batch of corpus 0 goes to the main model under ``main``; a batch of auxiliary corpus ``i`` to
    that corpus's heads under the supervised loss, times its weight."""

    def __init__(self, main: Objective, auxiliary: Sequence[tuple[str, float]], loss_settings: LossSettings):
        self.main = main
        self.part_names = main.part_names
        self.auxiliary = list(auxiliary)
        # Class weights and smoothing are the main corpus's recipe; auxiliary corpora train plainly.
        self.auxiliary_loss = SupervisedJointLoss(dataclasses.replace(loss_settings, event_class_weights=None))

    def __call__(self, model: nn.Module, batch: Batch) -> StepLoss:
        batch = dict(batch)
        task = int(batch.pop(TASK_KEY))
        if task == 0:
            return self.main(model.main, batch)
        name, weight = self.auxiliary[task - 1]
        loss = self.auxiliary_loss(model.auxiliary[name], batch)
        parts = {key: loss.parts.get(key, loss.total.new_zeros(())) for key in self.part_names}
        return StepLoss(weight * loss.total, parts)


class AuxiliaryHeads(TrainerPlugin):
    """Carries the auxiliary heads' weights (not the shared encoder's, saved with the main model) in the
    trainer's checkpoint."""

    name = "auxiliary_corpora"
    config_key = "auxiliary"
    resumable = True

    def __init__(self, corpora: Sequence[AuxiliaryCorpus]):
        self.corpora = list(corpora)

    def state_dict(self) -> dict:
        return {
            corpus.name: {
                key: value.detach().clone()
                for key, value in corpus.loaded.joint_model.state_dict().items()
                if not key.startswith("encoder.")
            }
            for corpus in self.corpora
        }

    def load_state_dict(self, state: dict) -> None:
        for corpus in self.corpora:
            if corpus.name not in state:
                raise ConfigError(f"cannot resume: auxiliary corpus '{corpus.name}' was not in that run")
            corpus.loaded.joint_model.load_state_dict(state[corpus.name], strict=False)

    def describe(self) -> dict[str, str]:
        return {corpus.name: f"{len(corpus.train)} train, weight {corpus.loss_weight}" for corpus in self.corpora}


def auxiliary_features(
    corpora: Sequence[AuxiliaryCorpus], tokenizer, max_length: int, window_overlap: int
) -> list[list[TrainingFeature]]:
    """Each auxiliary corpus's training features, tagged with its task index (1, 2, ...)."""
    return [
        encode_examples(corpus.train, tokenizer, corpus.loaded.label_schema, max_length, window_overlap, task=index)
        for index, corpus in enumerate(corpora, start=1)
    ]


def evaluate_auxiliary(corpora: Sequence[AuxiliaryCorpus], config: Config) -> dict[str, dict]:
    """Dev metrics of each auxiliary corpus on its own heads (multilabel thresholds tuned on its dev when
    its config says so, as for a main corpus)."""
    results = {}
    for corpus in corpora:
        results[corpus.name] = evaluate_adopting_thresholds(
            corpus.loaded, corpus.dev, config.training, config.inference.window_overlap, corpus.tune_threshold, "mean_f1"
        )
    return results


__all__ = [
    "AuxiliaryCorpus",
    "AuxiliaryHeads",
    "MultiCorpusBatches",
    "MultiCorpusObjective",
    "SharedEncoderModel",
    "auxiliary_features",
    "evaluate_auxiliary",
    "load_auxiliary",
]
