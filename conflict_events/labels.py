"""The label schema: event classes (name + numeric code) and actor roles, and the BIO tag list
derived from the roles. Label maps live with the model: a saved model stores ``to_json()`` and
reloads it with ``from_json()``, so a model never depends on the config it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OUTSIDE = "O"


@dataclass(frozen=True)
class EventClass:
    code: int
    name: str
    description: str = ""


@dataclass(frozen=True)
class ActorRole:
    tag: str
    name: str


@dataclass(frozen=True)
class LabelSchema:
    """Event classes and actor roles, with index maps derived from one ordered list each."""

    event_classes: tuple[EventClass, ...]
    actor_roles: tuple[ActorRole, ...]
    multilabel: bool = False

    # --- event classes -------------------------------------------------------------------------
    @property
    def event_names(self) -> list[str]:
        return [c.name for c in self.event_classes]

    def event_index(self, name: str) -> int:
        return self.event_names.index(name)

    def event_code(self, name: str) -> int:
        return self.event_classes[self.event_index(name)].code

    def event_by_code(self, code: int) -> EventClass:
        for event_class in self.event_classes:
            if event_class.code == code:
                return event_class
        raise KeyError(code)

    # --- actor roles / BIO ---------------------------------------------------------------------
    @property
    def role_tags(self) -> list[str]:
        return [r.tag for r in self.actor_roles]

    def role_name(self, tag: str) -> str:
        for role in self.actor_roles:
            if role.tag == tag:
                return role.name
        raise KeyError(tag)

    @property
    def bio_tags(self) -> list[str]:
        """``O`` first, then ``B-x``/``I-x`` for each role in order."""
        tags = [OUTSIDE]
        for tag in self.role_tags:
            tags += [f"B-{tag}", f"I-{tag}"]
        return tags

    def bio_index(self, bio_tag: str) -> int:
        return self.bio_tags.index(bio_tag)

    # --- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "multilabel": self.multilabel,
            "event_classes": [
                {"code": c.code, "name": c.name, "description": c.description} for c in self.event_classes
            ],
            "actor_roles": [{"tag": r.tag, "name": r.name} for r in self.actor_roles],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LabelSchema":
        return cls(
            event_classes=tuple(EventClass(**c) for c in data["event_classes"]),
            actor_roles=tuple(ActorRole(**r) for r in data["actor_roles"]),
            multilabel=bool(data.get("multilabel", False)),
        )
