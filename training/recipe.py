"""The one place where the training config becomes trainer parts: the objective and the plugins.

Every technique of ``training:`` maps here and nowhere else; the trainer never branches on which ones
are on. Adding a technique is a plugin (``plugins.py``) or an objective (``objectives.py``) plus a line
in :func:`training_recipe`.

| config | part |
|---|---|
| ``loss_weights``, ``label_smoothing``, ``class_weighting`` | :class:`~conflict_events.training.objectives.SupervisedJointLoss` settings |
| a teacher ensemble (``conflict-events distill``) | :class:`~conflict_events.training.distill.DistillationLoss` instead |
| ``consistency_weight > 0`` | :class:`~conflict_events.training.consistency.ConsistencyLoss` around it |
| ``entity_substitution_probability > 0`` | :class:`~conflict_events.training.plugins.EntitySubstitution` (before actor swap) |
| ``actor_swap_probability > 0`` | :class:`~conflict_events.training.plugins.ActorSwap` |
| ``token_masking_probability > 0`` | :class:`~conflict_events.training.plugins.TokenMasking` (after the other augmentations) |
| ``weight_averaging`` | :class:`~conflict_events.training.plugins.WeightAveraging` |
| ``auxiliary:`` corpora | :class:`~conflict_events.training.multicorpus.MultiCorpusObjective` around it, and :class:`~conflict_events.training.multicorpus.AuxiliaryHeads` (:meth:`Recipe.around_auxiliary`) |

``layerwise_lr_decay`` and ``head_learning_rate`` are optimiser settings (``optimisation.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from conflict_events.config import Config
from conflict_events.corpora.shift import default_substituter
from conflict_events.errors import ConfigError
from conflict_events.model import LoadedModel, LossSettings
from conflict_events.schema import EventExample
from conflict_events.training.consistency import ConsistencyLoss
from conflict_events.training.data import ActorSwapper, EntityAugmenter, TokenMasker, TrainingFeature, class_weights
from conflict_events.training.multicorpus import AuxiliaryCorpus, AuxiliaryHeads, MultiCorpusObjective
from conflict_events.training.objectives import JointObjective, Objective, SupervisedJointLoss
from conflict_events.training.plugins import ActorSwap, EntitySubstitution, TokenMasking, TrainerPlugin, WeightAveraging


class TeacherObjective(Protocol):
    """Builds the joint objective that replaces the supervised loss (distillation from teachers)."""

    def __call__(self, loss_settings: LossSettings, loaded: LoadedModel) -> JointObjective: ...


@dataclass
class Recipe:
    objective: Objective
    plugins: list[TrainerPlugin] = field(default_factory=list)
    loss_settings: LossSettings = field(default_factory=LossSettings)

    def around_auxiliary(self, corpora: Sequence[AuxiliaryCorpus]) -> "Recipe":
        """The recipe for training alongside auxiliary corpora (``training/multicorpus.py``): this objective
        for the main corpus's batches, the supervised loss for theirs, and their heads in checkpoints."""
        objective = MultiCorpusObjective(self.objective, [(c.name, c.loss_weight) for c in corpora], self.loss_settings)
        return Recipe(objective, [*self.plugins, AuxiliaryHeads(corpora)], self.loss_settings)

    def describe(self) -> dict[str, str]:
        """Tags for the run: which objective and which plugins trained it."""
        tags = {"training.objective": _objective_name(self.objective), "training.plugins": ",".join(p.name for p in self.plugins) or "none"}
        for plugin in self.plugins:
            tags.update({f"training.plugin.{plugin.name}.{key}": value for key, value in plugin.describe().items()})
        return tags


def training_recipe(
    config: Config,
    loaded: LoadedModel,
    features: Sequence[TrainingFeature],
    teacher_objective: TeacherObjective | None = None,
    examples: Sequence[EventExample] = (),
) -> Recipe:
    """``examples``: what ``features`` were encoded from (their ``example`` indices point into it), for the
    plugins that change examples rather than features (entity substitution)."""
    settings = config.training
    schema = loaded.label_schema
    loss_settings = LossSettings(
        event_weight=settings.loss_weights.event,
        role_weight=settings.loss_weights.actors,
        label_smoothing=settings.label_smoothing,
        event_class_weights=(
            class_weights(features, len(schema.event_names)) if settings.class_weighting and not schema.multilabel else None
        ),
    )
    objective: JointObjective = (
        SupervisedJointLoss(loss_settings) if teacher_objective is None else teacher_objective(loss_settings, loaded)
    )
    if settings.consistency_weight > 0:
        objective = ConsistencyLoss(objective, schema.multilabel, settings.consistency_weight)
    plugins: list[TrainerPlugin] = []
    if settings.entity_substitution_probability > 0:
        augmenter = EntityAugmenter(
            examples, features, default_substituter(), loaded.tokenizer, schema, settings.entity_substitution_probability,
            config.model.max_length, config.inference.window_overlap, settings.seed,
        )
        plugins.append(EntitySubstitution(augmenter))
    if settings.actor_swap_probability > 0:
        swapper = ActorSwapper(features, schema, settings.actor_swap_probability, config.model.max_length)
        plugins.append(ActorSwap(swapper, settings.seed))
    if settings.token_masking_probability > 0:
        # Last of the augmentations: it masks the text the others made.
        plugins.append(TokenMasking(token_masker(loaded, settings.token_masking_probability), settings.seed))
    if settings.weight_averaging is not None:
        plugins.append(WeightAveraging(loaded.joint_model, settings.weight_averaging))
    return Recipe(objective, plugins, loss_settings)


def token_masker(loaded: LoadedModel, probability: float) -> TokenMasker:
    tokenizer = loaded.tokenizer
    if tokenizer.mask_token_id is None:
        raise ConfigError(
            f"training.token_masking_probability: the tokenizer of {loaded.source!r} has no mask token; "
            "set it to 0 for this encoder"
        )
    return TokenMasker(probability, tokenizer.mask_token_id, tokenizer.all_special_ids)


def _objective_name(objective: Objective) -> str:
    inner = getattr(objective, "inner", None) or getattr(objective, "main", None)
    name = type(objective).__name__
    return name if inner is None else f"{name}({_objective_name(inner)})"
