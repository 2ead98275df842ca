"""The shared prediction step: texts in, event scores and actor spans (character offsets) out.

Evaluation during training, the ``evaluate`` command and the inference predictor (batch job, MLflow
pyfunc, Spark) all call :func:`predict_windowed`, so every path decodes exactly the same way: a text
with more sub-words than the model's ``max_length`` is cut into overlapping windows (:func:`text_windows`)
whose predictions are merged (:func:`merge_windows`), and the windows of all texts go through
:func:`predict_texts` together. Batches are sorted by length and padded per batch; the whole step runs
under ``torch.inference_mode``.

A :class:`~conflict_events.timing.StageTimes` passed down (the batch job's breakdown) accumulates the seconds of the step's three
stages: ``tokenise`` (windowing, sub-words, padded tensors), ``model`` (the forward pass) and ``decode``
(probabilities, BIO spans, merged windows). A few ``perf_counter`` calls per batch, none per sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from conflict_events.alignment import char_spans, decode_bio, is_special, is_valid_bio
from conflict_events.model import LoadedModel
from conflict_events.timing import StageTimes


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


# Sentences per batch are bounded by ``batch_size`` and by a token budget (items x longest): long sentences
# go in small batches, short ones in large ones. A forward pass costs about its padded tokens plus a fixed
# amount (the calls around the matmuls, and matmuls of few rows running below their rate); with the budget,
# per-token cost was lowest at 1-2k tokens per batch and rose above that (64 x 64 and 32 x 128 sub-words ran
# 10-40 % slower per token than 32 x 32 or 16 x 64 in ONNX Runtime on 2 AVX2 cores; docs/BENCHMARKS.md,
# "Batches").
DEFAULT_MAX_BATCH_TOKENS = 2048
# The fixed cost of one more batch, in padded tokens: 2-4 ms measured per call there, some 10-25 tokens' worth,
# set higher so that the plan does not trade large batches for a few tokens of padding.
BATCH_OVERHEAD_TOKENS = 128


def token_budget_batches(
    lengths: Sequence[int],
    max_batch: int,
    max_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    batch_overhead: int = BATCH_OVERHEAD_TOKENS,
) -> Iterator[list[int]]:
    """Indices sorted by length (longest first, ties in input order) and cut into batches of at most
    ``max_batch`` items whose padded size (items x longest) stays within ``max_tokens`` (a longer text
    alone is a batch of one), longest batch first.

    Of all such cuts of the sorted order, the one with the fewest padded tokens plus ``batch_overhead``
    per batch (dynamic programming over the cut points): filling each batch up to the limits in turn
    pads a batch of short sentences to the longest of a wide range of lengths, most when a model call has
    few sentences (a batch job's calls, a served request)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    longest_first = [lengths[i] for i in order]
    # cheapest[stop]: the least cost of batching the first ``stop`` sorted texts; first[stop]: where the
    # last batch of that cheapest plan starts.
    cheapest = [0] + [float("inf")] * len(order)
    first = [0] * (len(order) + 1)
    for stop in range(1, len(order) + 1):
        for start in range(stop - 1, max(stop - max_batch, 0) - 1, -1):
            size = stop - start
            padded = size * longest_first[start]  # grows as start moves back: stop there
            if size > 1 and padded > max_tokens:
                break
            cost = cheapest[start] + padded + batch_overhead
            if cost < cheapest[stop]:
                cheapest[stop], first[stop] = cost, start
    bounds = []
    stop = len(order)
    while stop:
        bounds.append((first[stop], stop))
        stop = first[stop]
    for start, stop in reversed(bounds):
        yield order[start:stop]


@dataclass(frozen=True)
class EncodedTexts:
    """Sub-word ids and offsets of every text, tokenised once and unpadded."""

    input_ids: list[list[int]]
    offsets: list[list[tuple[int, int]]]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def encode_texts(loaded: LoadedModel, texts: Sequence[str]) -> EncodedTexts:
    """Tokenise every text once with offsets, truncated to the model's max length, without padding."""
    encoded = loaded.tokenizer(
        list(texts),
        truncation=True,
        max_length=loaded.settings.max_length,
        return_offsets_mapping=True,
        return_token_type_ids=False,
        return_attention_mask=False,
    )
    return EncodedTexts(encoded["input_ids"], [[tuple(o) for o in row] for row in encoded["offset_mapping"]])


def padded_batch(encoded: EncodedTexts, batch: Sequence[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` for ``batch``, padded to its longest member."""
    width = max(len(encoded.input_ids[i]) for i in batch)
    rows = [encoded.input_ids[i] for i in batch]
    # Built as lists and converted once: a tensor per row cost more than the padding itself.
    input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids in rows], dtype=torch.long)
    attention_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in rows], dtype=torch.long)
    return input_ids, attention_mask


def event_decisions(scores: np.ndarray, loaded: LoadedModel) -> tuple[str, ...]:
    names = loaded.label_schema.event_names
    if loaded.label_schema.multilabel:
        thresholds = loaded.settings.thresholds(len(names))
        return tuple(name for name, score, threshold in zip(names, scores, thresholds) if score >= threshold)
    return (names[int(scores.argmax())],)


def decode_actor_spans(
    role_log_probs: np.ndarray, offsets: Sequence[Sequence[int]] | np.ndarray, loaded: LoadedModel
) -> tuple[PredictedSpan, ...]:
    """Valid BIO over the real (non-special) sub-words of one text, then character spans. ``offsets``: the
    sub-words' ``(start, end)``, as the tokenizer gives them (a list, taken as is) or as an array."""
    pairs = offsets.tolist() if isinstance(offsets, np.ndarray) else offsets
    keep = [i for i, offset in enumerate(pairs) if not is_special(offset)]
    if not keep:
        return ()
    bio_tags = loaded.label_schema.bio_tags
    log_probs = role_log_probs[keep]
    greedy = log_probs.argmax(axis=-1)
    if not greedy.any():  # all O: no spans, nothing to decode
        return ()
    tag_ids = greedy.tolist()
    tags = [bio_tags[i] for i in tag_ids]
    # When the arg-max sequence is already valid BIO it is also the constrained optimum, so Viterbi
    # (and greedy repair) would return it unchanged.
    if not is_valid_bio(tags):
        tag_ids = decode_bio(log_probs, bio_tags, loaded.settings.decoding)
        tags = [bio_tags[i] for i in tag_ids]
    probabilities = np.exp(log_probs[np.arange(len(tag_ids)), tag_ids])
    kept_offsets = [pairs[i] for i in keep]
    return tuple(PredictedSpan(*span) for span in char_spans(tags, kept_offsets, probabilities))


def outputs_for_batch(
    loaded: LoadedModel, encoded: EncodedTexts, batch: Sequence[int], timings: StageTimes | None = None
) -> list[TextPrediction]:
    timings = timings if timings is not None else StageTimes()
    with timings.stage("tokenise"):
        input_ids, attention_mask = padded_batch(encoded, batch, loaded.tokenizer.pad_token_id or 0)
    with timings.stage("model"):
        output = loaded.model(input_ids=input_ids, attention_mask=attention_mask)
    with timings.stage("decode"):
        return _decoded(loaded, encoded, batch, output)


def _decoded(loaded: LoadedModel, encoded: EncodedTexts, batch: Sequence[int], output) -> list[TextPrediction]:
    if loaded.label_schema.multilabel:
        event_scores = torch.sigmoid(output.event_logits).float().numpy()
    else:
        event_scores = torch.softmax(output.event_logits, dim=-1).float().numpy()
    role_log_probs = torch.log_softmax(output.role_logits, dim=-1).float().numpy()
    predictions = []
    for row, index in enumerate(batch):
        length = len(encoded.input_ids[index])
        predictions.append(
            TextPrediction(
                event_scores=event_scores[row],
                events=event_decisions(event_scores[row], loaded),
                actors=decode_actor_spans(role_log_probs[row, :length], encoded.offsets[index], loaded),
            )
        )
    return predictions


def predict_texts(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int = 64,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    timings: StageTimes | None = None,
) -> list[TextPrediction]:
    """Predictions in input order. Empty texts get a prediction with no actors (scores still computed).

    Texts are tokenised once, sorted by sub-word count and batched under a token budget; token type
    ids are left out because every input is a single segment (all zeros, the encoder's default).
    """
    if not texts:
        return []
    timings = timings if timings is not None else StageTimes()
    with timings.stage("tokenise"):
        encoded = encode_texts(loaded, texts)
    return _predict_encoded(loaded, encoded, batch_size, max_batch_tokens, timings)


def _predict_encoded(
    loaded: LoadedModel, encoded: EncodedTexts, batch_size: int, max_batch_tokens: int, timings: StageTimes
) -> list[TextPrediction]:
    """:func:`predict_texts` for texts already tokenised by :func:`encode_texts`."""
    was_training = loaded.model.training
    loaded.model.eval()
    results: list[TextPrediction | None] = [None] * len(encoded.input_ids)
    with torch.inference_mode():
        for batch in token_budget_batches(encoded.lengths, batch_size, max_batch_tokens):
            for index, prediction in zip(batch, outputs_for_batch(loaded, encoded, batch, timings)):
                results[index] = prediction
    if was_training:
        loaded.model.train()
    return results  # type: ignore[return-value]


# --- windows ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextWindow:
    """A stretch of a text passed to the model, in character offsets into the text. Actor spans starting
    inside ``[own_start, own_end)`` are kept from this window, so a span two windows see is kept once."""

    char_start: int
    char_end: int
    own_start: int
    own_end: int


def window_size(loaded: LoadedModel) -> int:
    """Sub-words of text one window holds: the model's max length less its special tokens."""
    return max(1, loaded.settings.max_length - loaded.tokenizer.num_special_tokens_to_add(pair=False))


def text_windows(tokenizer, text: str, window_tokens: int, overlap: int) -> list[TextWindow]:
    """``text`` as one window when it fits in ``window_tokens`` sub-words, else as windows of that size
    overlapping by about ``overlap`` sub-words (at most half a window, so each window advances)."""
    return texts_windows(tokenizer, [text], window_tokens, overlap)[0]


def texts_windows(tokenizer, texts: Sequence[str], window_tokens: int, overlap: int) -> list[list[TextWindow]]:
    """:func:`text_windows` of each text, with the texts that may not fit tokenised in one tokenizer call
    (a call per text paid the tokenizer wrapper's per-call cost for each)."""
    # A sub-word covers at least one character: a text no longer than the window in characters fits.
    long = [row for row, text in enumerate(texts) if len(text) > window_tokens]
    windows = [[TextWindow(0, len(text), 0, len(text))] for text in texts]
    if not long:
        return windows
    # verbose=False: whole texts are tokenised on purpose, to be cut; no "longer than the maximum" warning.
    encoded = tokenizer([texts[row] for row in long], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    for row, offsets in zip(long, encoded["offset_mapping"]):
        if len(offsets) > window_tokens:
            windows[row] = _cut_windows(texts[row], offsets, window_tokens, overlap)
    return windows


def _cut_windows(text: str, offsets: Sequence[tuple[int, int]], window_tokens: int, overlap: int) -> list[TextWindow]:
    """The windows of a text of more than ``window_tokens`` sub-words (``offsets``: theirs, no specials)."""
    overlap = min(overlap, window_tokens // 2)
    # Windows start on a word (not inside one), so re-tokenising the window text gives the same sub-words.
    word_starts = [i for i in range(len(offsets)) if i == 0 or offsets[i][0] > offsets[i - 1][1]]
    starts = [0]
    while starts[-1] + window_tokens < len(offsets):
        target = starts[-1] + window_tokens - overlap
        candidates = [i for i in word_starts if starts[-1] < i <= target]
        starts.append(candidates[-1] if candidates else target)
    spans = [(offsets[first][0], offsets[min(first + window_tokens, len(offsets)) - 1][1]) for first in starts]
    # Each window owns the text from the middle of its overlap with the previous window to the middle of
    # its overlap with the next.
    owns = [0] + [(start + previous_end) // 2 for (start, _), (_, previous_end) in zip(spans[1:], spans)] + [len(text)]
    return [TextWindow(start, end, owns[i], owns[i + 1]) for i, (start, end) in enumerate(spans)]


def _windows_and_inputs(loaded: LoadedModel, texts: Sequence[str], overlap: int) -> tuple[list[list[TextWindow]], EncodedTexts]:
    """Each text's windows (:func:`text_windows`) and the model input of every window, in order: what
    :func:`predict_texts` would tokenise for the window texts, with each text tokenised once where it fits.

    Every text is tokenised for the model first (:func:`encode_texts`). That is the input of a text that is
    one window, and it says which texts are: one of fewer than ``max_length`` sub-words was not truncated,
    and the tokenizer adds ``num_special_tokens_to_add`` special tokens to a text, so it has fewer than
    :func:`window_size` of its own, and fits. Only the other long texts are tokenised again, without special
    tokens, to be measured and cut, and their windows tokenised for the model."""
    size = window_size(loaded)
    whole = encode_texts(loaded, texts)
    max_length = loaded.settings.max_length
    # window_size's floor of one sub-word breaks the reasoning above for a max_length below the specials.
    counted = max_length - loaded.tokenizer.num_special_tokens_to_add(pair=False) == size
    measured = [
        row for row, text in enumerate(texts)
        if len(text) > size and not (counted and len(whole.input_ids[row]) < max_length)
    ]
    windows = [[TextWindow(0, len(text), 0, len(text))] for text in texts]
    for row, cut in zip(measured, texts_windows(loaded.tokenizer, [texts[row] for row in measured], size, overlap)):
        windows[row] = cut
    pieces = [texts[row][w.char_start : w.char_end] for row in measured if len(windows[row]) > 1 for w in windows[row]]
    cut = encode_texts(loaded, pieces) if pieces else EncodedTexts([], [])
    input_ids: list[list[int]] = []
    offsets: list[list[tuple[int, int]]] = []
    piece = 0
    for row, text_windows_ in enumerate(windows):
        if len(text_windows_) == 1:
            input_ids.append(whole.input_ids[row])
            offsets.append(whole.offsets[row])
            continue
        input_ids += cut.input_ids[piece : piece + len(text_windows_)]
        offsets += cut.offsets[piece : piece + len(text_windows_)]
        piece += len(text_windows_)
    return windows, EncodedTexts(input_ids, offsets)


def merge_windows(parts: Sequence[tuple[TextWindow, TextPrediction]], loaded: LoadedModel) -> TextPrediction:
    """One prediction for a text from its windows' (spans in text offsets). Multilabel: a class present
    in any window is present; multiclass: the mean of the windows' probabilities."""
    if len(parts) == 1 and parts[0][0].char_start == 0:
        return parts[0][1]
    scores = [prediction.event_scores for _, prediction in parts]
    merged = np.max(scores, axis=0) if loaded.label_schema.multilabel else np.mean(scores, axis=0)
    actors = sorted(
        (
            PredictedSpan(span.role, window.char_start + span.char_start, window.char_start + span.char_end, span.score)
            for window, prediction in parts
            for span in prediction.actors
            if window.own_start <= window.char_start + span.char_start < window.own_end
        ),
        key=lambda span: (span.char_start, span.char_end),
    )
    return TextPrediction(merged, event_decisions(merged, loaded), _without_overlaps(actors))


def _without_overlaps(actors: Sequence[PredictedSpan]) -> tuple[PredictedSpan, ...]:
    """A span kept by one window can run into the next window's region, where that window may have
    decoded a span of its own over the same words; the one that starts first wins."""
    kept: list[PredictedSpan] = []
    for actor in actors:
        if not kept or actor.char_start >= kept[-1].char_end:
            kept.append(actor)
    return tuple(kept)


def predict_windowed(
    loaded: LoadedModel,
    texts: Sequence[str],
    batch_size: int = 64,
    window_overlap: int = 32,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    timings: StageTimes | None = None,
) -> list[TextPrediction]:
    """Predictions in input order for texts of any length: long texts are windowed, and all windows of
    all texts go through the model together, as :func:`predict_texts` runs texts. Offsets are into each text."""
    if not texts:
        return []
    timings = timings if timings is not None else StageTimes()
    with timings.stage("tokenise"):
        windows, encoded = _windows_and_inputs(loaded, texts, window_overlap)
    flat = [(row, window) for row, text_windows_ in enumerate(windows) for window in text_windows_]
    predictions = _predict_encoded(loaded, encoded, batch_size, max_batch_tokens, timings)
    with timings.stage("decode"):
        parts: list[list[tuple[TextWindow, TextPrediction]]] = [[] for _ in texts]
        for (row, window), prediction in zip(flat, predictions):
            parts[row].append((window, prediction))
        return [merge_windows(text_parts, loaded) for text_parts in parts]
