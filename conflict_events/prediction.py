"""The shared prediction step: texts in, event scores and actor spans (character offsets) out.

Evaluation during training, the ``evaluate`` command and the inference predictor (batch job, MLflow
pyfunc, Spark) all call :func:`predict_texts`, so every path decodes exactly the same way.
Batches are sorted by length and padded per batch; the whole step runs under ``torch.inference_mode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from conflict_events.alignment import char_spans, decode_bio, is_special
from conflict_events.model import LoadedModel


@dataclass(frozen=True)
class PredictedSpan:
    role: str
    char_start: int
    char_end: int
    score: float


@dataclass(frozen=True)
class TextPrediction:
    """Prediction for one text. ``event_scores`` holds a probability per event class (schema order);
    ``events`` the predicted class names (one for multiclass, zero or more for multilabel)."""

    event_scores: np.ndarray
    events: tuple[str, ...]
    actors: tuple[PredictedSpan, ...]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first), so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def encode_texts(loaded: LoadedModel, texts: Sequence[str]) -> dict:
    """Tokenise with offsets, truncating to the model's max length, padding to the longest in the batch."""
    return loaded.tokenizer(
        list(texts),
        truncation=True,
        max_length=loaded.settings.max_length,
        padding=True,
        return_offsets_mapping=True,
        return_tensors="pt",
    )


def event_decisions(scores: np.ndarray, loaded: LoadedModel) -> tuple[str, ...]:
    names = loaded.label_schema.event_names
    if loaded.label_schema.multilabel:
        return tuple(name for name, score in zip(names, scores) if score >= loaded.settings.threshold)
    return (names[int(scores.argmax())],)


def decode_actor_spans(role_log_probs: np.ndarray, offsets: np.ndarray, loaded: LoadedModel) -> tuple[PredictedSpan, ...]:
    """Valid BIO over the real (non-special) sub-words of one text, then character spans."""
    keep = [i for i, offset in enumerate(offsets) if not is_special(tuple(offset))]
    if not keep:
        return ()
    bio_tags = loaded.label_schema.bio_tags
    log_probs = role_log_probs[keep]
    tag_ids = decode_bio(log_probs, bio_tags, loaded.settings.decoding)
    tags = [bio_tags[i] for i in tag_ids]
    probabilities = np.exp(log_probs[np.arange(len(tag_ids)), tag_ids])
    kept_offsets = [tuple(int(x) for x in offsets[i]) for i in keep]
    return tuple(PredictedSpan(*span) for span in char_spans(tags, kept_offsets, probabilities))


def outputs_for_batch(loaded: LoadedModel, texts: Sequence[str]) -> list[TextPrediction]:
    encoded = encode_texts(loaded, texts)
    offsets = encoded.pop("offset_mapping").numpy()
    output = loaded.model(**{k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    if loaded.label_schema.multilabel:
        event_scores = torch.sigmoid(output.event_logits).float().numpy()
    else:
        event_scores = torch.softmax(output.event_logits, dim=-1).float().numpy()
    role_log_probs = torch.log_softmax(output.role_logits, dim=-1).float().numpy()
    lengths = encoded["attention_mask"].sum(dim=1).tolist()
    predictions = []
    for row in range(len(texts)):
        length = int(lengths[row])
        predictions.append(
            TextPrediction(
                event_scores=event_scores[row],
                events=event_decisions(event_scores[row], loaded),
                actors=decode_actor_spans(role_log_probs[row, :length], offsets[row, :length], loaded),
            )
        )
    return predictions


def predict_texts(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 64) -> list[TextPrediction]:
    """Predictions in input order. Empty texts get a prediction with no actors (scores still computed)."""
    if not texts:
        return []
    was_training = loaded.model.training
    loaded.model.eval()
    results: list[TextPrediction | None] = [None] * len(texts)
    lengths = [len(text) for text in texts]
    with torch.inference_mode():
        for batch in length_sorted_batches(lengths, batch_size):
            for index, prediction in zip(batch, outputs_for_batch(loaded, [texts[i] for i in batch])):
                results[index] = prediction
    if was_training:
        loaded.model.train()
    return results  # type: ignore[return-value]
