"""A small randomly initialised joint model for tests and demos of the inference stack (never trained)."""

from __future__ import annotations

from pathlib import Path

from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.model import HeadSettings, build_joint_model, save_joint_model

DEMO_SCHEMA = LabelSchema(
    event_classes=(
        EventClass(0, "neutral"),
        EventClass(1, "verbal_cooperation"),
        EventClass(2, "material_cooperation"),
        EventClass(3, "verbal_conflict"),
        EventClass(4, "material_conflict"),
    ),
    actor_roles=(ActorRole("S", "source"), ActorRole("T", "target"), ActorRole("R", "reciprocal")),
)


def save_random_joint_model(
    encoder_dir: str | Path,
    directory: str | Path,
    max_length: int = 64,
    multilabel: bool = False,
    seed: int = 0,
) -> Path:
    """A joint model with random heads on ``encoder_dir`` saved to ``directory`` (returned)."""
    import torch

    torch.manual_seed(seed)
    schema = LabelSchema(DEMO_SCHEMA.event_classes, DEMO_SCHEMA.actor_roles, multilabel=multilabel)
    loaded = build_joint_model(str(encoder_dir), schema, HeadSettings(max_length=max_length))
    return save_joint_model(loaded, directory)
