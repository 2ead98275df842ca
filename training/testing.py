"""A tiny synthetic corpus and config for tests and demos of the training stack (seconds on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conflict_events.config import Config, config_from_mapping

ACTORS = ["Rebel fighters", "The army", "Police", "The government", "Protesters", "The UN envoy", "Kenya", "Somalia"]
TEMPLATES = [
    ("{S} attacked {T} near the border.", "material_conflict"),
    ("{S} condemned {T} on Monday.", "verbal_conflict"),
    ("{S} sent food aid to {T}.", "material_cooperation"),
    ("{S} agreed to hold talks with {T}.", "verbal_cooperation"),
    ("{S} said the situation was calm.", "neutral"),
]


def tiny_examples(
    count: int = 40, actors: list[str] = ACTORS, prefix: str = "tiny", every_layer: bool = False
) -> list[dict[str, Any]]:
    """Canonical JSONL records; every 7th has no actor layer and every 9th no event label (unless
    ``every_layer``). Other ``actors`` give sentences of the same templates the default corpus never has."""
    records = []
    for index in range(count):
        template, event = TEMPLATES[index % len(TEMPLATES)]
        source = actors[index % len(actors)]
        target = actors[(index * 3 + 1) % len(actors)]
        if target == source:
            target = actors[(index + 1) % len(actors)]
        text = template.replace("{S}", source, 1)
        spans = [{"role": "S", "char_start": 0, "char_end": len(source)}]
        if "{T}" in text:
            start = text.index("{T}")
            text = text.replace("{T}", target, 1)
            spans.append({"role": "T", "char_start": start, "char_end": start + len(target)})
        record: dict[str, Any] = {"id": f"{prefix}-{index:03d}", "text": text}
        if every_layer or index % 9 != 8:
            record["event"] = event
        if every_layer or index % 7 != 6:
            record["actors"] = spans
        records.append(record)
    return records


def write_tiny_corpus(directory: Path, count: int = 40) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tiny_examples(count)), encoding="utf-8")
    return path


def tiny_config_mapping(data_root: Path, encoder: str | Path, output_dir: Path) -> dict[str, Any]:
    return {
        "data": {"root": str(data_root), "train": {"jsonl": "events.jsonl"}, "dev_split": {"fraction": 0.25, "seed": 1}},
        "labels": {
            "task": "multiclass",
            "event_classes": [{"code": i, "name": name} for i, name in enumerate(
                ["neutral", "verbal_cooperation", "material_cooperation", "verbal_conflict", "material_conflict"]
            )],
            "actor_roles": [{"tag": "S", "name": "source"}, {"tag": "T", "name": "target"}],
        },
        "model": {"encoder": str(encoder), "max_length": 32},
        "training": {
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "seed": 7,
            "early_stopping_patience": None,
            "output_dir": str(output_dir),
        },
        "tracking": {"experiment": "tiny", "registered_model": "tiny-model", "corpus": "tiny"},
    }


def tiny_config(data_root: Path, encoder: str | Path, output_dir: Path, **sections: dict[str, Any]) -> Config:
    """The tiny config; ``sections`` update its sections, e.g. ``training={"epochs": 1}``."""
    mapping = tiny_config_mapping(data_root, encoder, output_dir)
    for name, values in sections.items():
        mapping.setdefault(name, {}).update(values)
    return config_from_mapping(mapping, source="<tiny>")
