"""Ensembles of joint models: several teachers scored as one.

**Ensemble** (:class:`EnsembleModel`): the teachers read the same sub-words (they must share the tokenizer:
checked, with a clear error otherwise) and their probabilities are averaged: event class probabilities
(softmax; multilabel: sigmoid) and, per sub-word, role-tag probabilities. It returns log-probabilities as
logits, so it goes through the shared prediction step like any joint model (softmax of a log-probability
vector is the vector) and can be scored with :func:`~conflict_events.training.evaluate.evaluate_loaded`.
An ensemble of N models costs N forward passes, so it is a teacher, not what gets served.

Distillation of an ensemble into one student: ``training/distill.py``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from conflict_events.errors import ConfigError, ModelError
from conflict_events.labels import LabelSchema
from conflict_events.model import HeadSettings, JointModel, JointOutput, LoadedModel, load_joint_model

PROBABILITY_FLOOR = 1e-12
# A sentence tokenised by every teacher and by the student to check that they split text identically.
TOKENIZER_PROBE = "Rebels attacked the convoy near Kismayo on Monday; Erdoğan's office said 3,000 troops (UN) arrived."


# --- the ensemble --------------------------------------------------------------------------------
class EnsembleModel(nn.Module):
    """Averages the probabilities of joint models that share labels and tokenizer; see the module docstring."""

    def __init__(self, teachers: Sequence[JointModel]):
        super().__init__()
        if not teachers:
            raise ConfigError("an ensemble needs at least one model")
        self.teachers = nn.ModuleList(teachers)
        first = teachers[0]
        self.label_schema: LabelSchema = first.label_schema
        classes = len(first.label_schema.event_classes)
        per_teacher = [teacher.settings.thresholds(classes) for teacher in teachers]
        self.settings = HeadSettings(
            max_length=first.settings.max_length,
            dropout=0.0,
            decoding=first.settings.decoding,
            threshold=sum(teacher.settings.threshold for teacher in teachers) / len(teachers),
            class_thresholds=tuple(sum(column) / len(teachers) for column in zip(*per_teacher)),
        )

    @property
    def multilabel(self) -> bool:
        return self.label_schema.multilabel

    def probabilities(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(event probabilities (batch, classes), role-tag probabilities (batch, seq, tags))``, averaged
        over the teachers, each at ``temperature``."""
        event_sum = role_sum = None
        for teacher in self.teachers:
            output = teacher(input_ids, attention_mask, token_type_ids)
            event_logits = output.event_logits.float() / temperature
            event = torch.sigmoid(event_logits) if self.multilabel else torch.softmax(event_logits, dim=-1)
            role = torch.softmax(output.role_logits.float() / temperature, dim=-1)
            event_sum = event if event_sum is None else event_sum + event
            role_sum = role if role_sum is None else role_sum + role
        count = len(self.teachers)
        return event_sum / count, role_sum / count

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> JointOutput:
        event, role = self.probabilities(input_ids, attention_mask, token_type_ids)
        if self.multilabel:
            event = event.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
            event_logits = torch.log(event) - torch.log1p(-event)
        else:
            event_logits = torch.log(event.clamp_min(PROBABILITY_FLOOR))
        return JointOutput(event_logits=event_logits, role_logits=torch.log(role.clamp_min(PROBABILITY_FLOOR)))


def tokenizer_mismatch(first, second) -> str | None:
    """Why two tokenizers would split text differently (None when they agree)."""
    first_vocab, second_vocab = first.get_vocab(), second.get_vocab()
    if first_vocab != second_vocab:
        return f"vocabularies differ ({len(first_vocab)} vs {len(second_vocab)} entries)"
    first_ids = first(TOKENIZER_PROBE)["input_ids"]
    second_ids = second(TOKENIZER_PROBE)["input_ids"]
    if first_ids != second_ids:
        return "same vocabulary, but a test sentence is tokenised differently (casing or normalisation differ)"
    return None


def check_compatible(teachers: Sequence[LoadedModel], names: Sequence[str], schema: LabelSchema | None = None) -> None:
    """Teachers must share the labels (``schema``, the config's, when given) and the tokenizer:
    averaging is per class and per sub-word."""
    reference_schema = schema if schema is not None else teachers[0].label_schema
    for teacher, name in zip(teachers, names):
        if teacher.label_schema.to_json() != reference_schema.to_json():
            raise ModelError(
                f"teacher '{name}' has other labels than {'the config' if schema is not None else repr(names[0])}: "
                f"event classes {list(teacher.label_schema.event_names)} vs {list(reference_schema.event_names)}, "
                f"BIO tags {list(teacher.label_schema.bio_tags)} vs {list(reference_schema.bio_tags)}"
            )
    for teacher, name in list(zip(teachers, names))[1:]:
        why = tokenizer_mismatch(teachers[0].tokenizer, teacher.tokenizer)
        if why:
            raise ModelError(
                f"teacher '{name}' uses another tokenizer than teacher '{names[0]}' ({why}); an ensemble averages "
                "per sub-word, so all teachers need the same tokenizer"
            )


def load_ensemble(uris: Sequence[str], schema: LabelSchema | None = None) -> LoadedModel:
    """The joint models at ``uris`` (``models:/...``, ``runs:/.../model`` or directories) as one ensemble."""
    if not uris:
        raise ConfigError("an ensemble needs at least one model")
    return ensemble_of([load_joint_model(uri) for uri in uris], uris, schema)


def ensemble_of(teachers: Sequence[LoadedModel], uris: Sequence[str], schema: LabelSchema | None = None) -> LoadedModel:
    """Loaded joint models as one ensemble (labels and tokenizer checked)."""
    check_compatible(teachers, list(uris), schema)
    ensemble = EnsembleModel([teacher.model for teacher in teachers])
    ensemble.eval()
    return LoadedModel(ensemble, teachers[0].tokenizer, source=" + ".join(uris))
