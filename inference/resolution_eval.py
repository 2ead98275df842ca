"""``conflict-events evaluate-resolution --model``: resolution end to end, on a model's own sentences and
actor spans (the predictor, exactly as ``predict`` runs it), scored against the gold set by
:mod:`conflict_events.resolution.evaluation` (spans matched to gold by exact offsets)."""

from __future__ import annotations

from typing import Any, Sequence

from conflict_events.config import InferenceConfig
from conflict_events.inference.predictor import Predictor
from conflict_events.resolution.evaluation import GoldDocument, from_records, score
from conflict_events.schema import Document


def evaluate_end_to_end(model: str, gold: Sequence[GoldDocument], settings: InferenceConfig) -> dict[str, Any]:
    predictor = Predictor.from_uri(model, settings)
    grouped = predictor.predict_by_document([Document(document.id, document.text) for document in gold])
    return score(gold, [from_records(records) for records in grouped])
