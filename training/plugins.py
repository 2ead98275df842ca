"""Trainer plugins: a training technique as one object hooked to named events of the
:class:`~conflict_events.training.loop.Trainer` (the shape of flair's ``TrainerPlugin``).

A plugin owns its state: the trainer saves ``state_dict()`` of every plugin in the checkpoint and hands it
back through ``load_state_dict`` on resume, so resume needs no code per technique. The hooks, in the order
the trainer calls them:

- ``setup(model)``                    once, before the first step (after a resume's state is loaded)
- ``on_epoch_start(epoch)``           before the epoch's first batch
- ``on_batch(batch, epoch)``          each batch as the batch source made it, before it is collated
                                      (augmentation); returns the batch to use
- ``after_optimizer_step()``          after every optimiser and scheduler step
- ``evaluation_weights()``            a context manager around each evaluation and around saving the
                                      evaluated weights (weight averaging swaps its average in)
- ``on_epoch_end(event)``             after the epoch's evaluation

Which plugins a run gets is decided from the config in one place,
:func:`conflict_events.training.recipe.training_recipe`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

import numpy as np
import torch

from conflict_events.training.averaging import WeightAverager
from conflict_events.training.data import ActorSwapper, EntityAugmenter, TokenMasker, TrainingFeature
from conflict_events.training.events import EpochEvent


class TrainerPlugin:
    """Every hook is a no-op here; a plugin overrides the ones it needs.

    ``name`` keys the plugin's state in checkpoints; ``config_key`` is the config value that switches it
    on, named in errors. ``resumable`` plugins carry state that a resumed run must find again: switching
    one on or off between a run and its resume is refused."""

    name: ClassVar[str] = ""
    config_key: ClassVar[str] = ""
    resumable: ClassVar[bool] = False

    def setup(self, model: torch.nn.Module) -> None:
        pass

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def on_batch(self, batch: Any, epoch: int) -> Any:
        return batch

    def after_optimizer_step(self) -> None:
        pass

    def evaluation_weights(self) -> AbstractContextManager[None]:
        return nullcontext()

    def on_epoch_end(self, event: EpochEvent) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def describe(self) -> dict[str, str]:
        """What the plugin was set to, for the run's tags."""
        return {}


class WeightAveraging(TrainerPlugin):
    """``training.weight_averaging``: an exponential moving average of the weights, updated after every
    step; evaluation and the ``best/`` checkpoint use the average (see ``averaging.py``)."""

    name = "weight_averaging"
    config_key = "training.weight_averaging"
    resumable = True

    def __init__(self, model: torch.nn.Module, decay: float):
        self.averager = WeightAverager(model, decay)

    def after_optimizer_step(self) -> None:
        self.averager.update()

    def evaluation_weights(self) -> AbstractContextManager[None]:
        return self.averager.averaged_weights()

    def state_dict(self) -> dict:
        return self.averager.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averager.load_state_dict(state)

    def describe(self) -> dict[str, str]:
        return {"decay": str(self.averager.decay)}


class FeatureAugmentation(TrainerPlugin):
    """An augmentation applied to every feature of a batch, ``augment(feature, rng)``, with a random stream
    seeded per epoch (``training.seed + epoch + seed_offset``), so a resumed epoch draws exactly as its first
    try did and nothing needs saving. ``seed_offset`` keeps each technique's stream apart from the batch
    order's (seeded with the same epoch seed) and from the others'."""

    seed_offset: ClassVar[int] = 0

    def __init__(self, augment: ActorSwapper | TokenMasker, seed: int):
        self.augment = augment
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def on_epoch_start(self, epoch: int) -> None:
        self.rng = np.random.default_rng(self.seed + epoch + self.seed_offset)

    def on_batch(self, batch: list[TrainingFeature], epoch: int) -> list[TrainingFeature]:
        return [self.augment(feature, self.rng) for feature in batch]

    def describe(self) -> dict[str, str]:
        return {"probability": str(self.augment.probability)}


class ActorSwap(FeatureAugmentation):
    """``training.actor_swap_probability``: each actor mention of a training batch is replaced, with that
    probability, by another training mention of the same role (``data.ActorSwapper``)."""

    name = "actor_swap"
    config_key = "training.actor_swap_probability"
    seed_offset = 1_000_003


class TokenMasking(FeatureAugmentation):
    """``training.token_masking_probability``: each sub-word of a training batch (special tokens excepted)
    becomes the mask token with that probability (``data.TokenMasker``), anew each epoch, after any other
    augmentation has made the batch."""

    name = "token_masking"
    config_key = "training.token_masking_probability"
    seed_offset = 2_000_003


class EntitySubstitution(TrainerPlugin):
    """``training.entity_substitution_probability``: each training example of a batch (class-only ones
    too) has, with that probability, its named entities substituted by others of the same kind, kept
    consistent within the example (``corpora/shift.py``, ``data.EntityAugmenter``), and is tokenised again.
    The draw is seeded by ``training.seed``, the epoch and the example, so a resumed epoch substitutes
    exactly as the first try did; nothing needs saving. The recipe attaches it before actor swap, which then
    swaps mentions of the substituted text."""

    name = "entity_substitution"
    config_key = "training.entity_substitution_probability"

    def __init__(self, augmenter: EntityAugmenter):
        self.augmenter = augmenter

    def on_batch(self, batch: list[TrainingFeature], epoch: int) -> list[TrainingFeature]:
        return self.augmenter(batch, epoch)

    def describe(self) -> dict[str, str]:
        return {
            "probability": str(self.augmenter.probability),
            "kinds": ",".join(sorted(self.augmenter.substituter.kinds)),
        }
