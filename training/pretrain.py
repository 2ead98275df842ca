"""Domain-adaptive continued pretraining: masked-LM training of ``model.encoder`` on unlabeled news text,
tracked in MLflow and registered so a training config can use it as ``model.encoder: models:/<name>/<v>``.

Text (:func:`read_segments`): the batch job's readers (:func:`conflict_events.sources.read_documents`:
IndiaPoliceEvents-style ``.tsv`` articles, ``.txt`` files and folders, ``.jsonl``/``.csv``/``.parquet`` with a
text field), split into sentences with the predictor's pysbd splitter; ``pretrain.unit: chunk`` packs
consecutive sentences of a document into segments of up to ``pretrain.max_length`` sub-words. Sentences of
fewer than ``pretrain.min_words`` words and exact repeats are dropped; a ``heldout_fraction`` of the segments
is kept apart to measure the masked-LM loss before training and after every epoch.

Model: ``AutoModelForMaskedLM`` from the encoder directory. The default encoder (all-MiniLM-L6-v2, a
sentence-transformers export) ships **without** an MLM head: the head's transform layer and bias are then
initialised fresh (the decoder is tied to the word embeddings), which the run records in the tag
``pretrain.mlm_head`` and the log says. Masking is BERT's: ``mlm_probability`` of the real sub-words are
chosen, 80 % become ``[MASK]``, 10 % a random token, 10 % stay; it is drawn from a generator seeded per
epoch (``pretrain.seed + epoch``) and, for the held-out loss, from one fixed seed so every evaluation
masks the same positions.

Saved and logged: the whole masked-LM model (``config.json`` + ``model.safetensors``, so a second round of
pretraining keeps its head) and the tokenizer, in ``pretrain.output_dir`` and as the run artifact
``encoder/``, registered as ``pretrain.registered_encoder``. ``AutoModel`` (what training loads) reads the
encoder part of it; :func:`conflict_events.tracking.download_encoder` finds the directory.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer

from conflict_events import tracking
from conflict_events.config import Config, PretrainConfig
from conflict_events.errors import DataError, Issue, Location, ModelError
from conflict_events.model import resolve_encoder
from conflict_events.sentences import SentenceSplitter
from conflict_events.sources import BadRecord, ReaderSettings, expand_inputs, read_documents
from conflict_events.training.data import length_grouped_batches
from conflict_events.training.events import StepEvent
from conflict_events.training.loop import LoopSettings, Trainer
from conflict_events.training.objectives import MaskedLMLoss
from conflict_events.training.optimisation import OptimiserSettings, build_optimizer, build_scheduler
from conflict_events.training.reports import sha256_file

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
ENCODER_ARTIFACT = "encoder"
LOG_EVERY = 20
# The held-out masks are drawn from this seed (plus pretrain.seed) so losses are comparable across epochs.
HELDOUT_MASK_SEED = 1_000_003


# --- text ----------------------------------------------------------------------------------------
@dataclass
class TextStats:
    files: list[dict] = field(default_factory=list)
    documents: int = 0
    bad_records: int = 0
    bad_record_examples: list[dict] = field(default_factory=list)
    sentences: int = 0
    short_sentences_dropped: int = 0
    duplicates_dropped: int = 0
    segments: int = 0
    train_segments: int = 0
    heldout_segments: int = 0
    train_sequences: int = 0
    # Segments longer than max_length, cut into several sequences.
    split_segments: int = 0
    train_tokens: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def read_documents_text(paths: Sequence[str | Path], text_field: str, stats: TextStats) -> list[str]:
    """The documents' texts, in a deterministic order; unreadable records are counted, not fatal."""

    stats.files = [{"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)} for path in expand_inputs(paths)]
    texts = []
    for item in read_documents(paths, ReaderSettings(text_field=text_field)):
        if isinstance(item, BadRecord):
            stats.bad_records += 1
            if len(stats.bad_record_examples) < 20:
                stats.bad_record_examples.append(item.to_json())
            continue
        texts.append(item.text)
    stats.documents = len(texts)
    return texts


def document_segments(
    document: str, splitter, settings: PretrainConfig, count_tokens: Callable[[str], int], seen: set[str], stats: TextStats
) -> list[str]:
    """The document's sentences (or chunks of them), without short sentences and sentences in ``seen``."""
    sentences = [document[span.char_start : span.char_end] for span in splitter.split(document)]
    stats.sentences += len(sentences)
    kept = []
    for sentence in sentences:
        if len(sentence.split()) < settings.min_words:
            stats.short_sentences_dropped += 1
            continue
        key = " ".join(sentence.split())
        if key in seen:
            # Wire copy repeats the same sentences across articles; training on them twice only overweights them.
            stats.duplicates_dropped += 1
            continue
        seen.add(key)
        kept.append(sentence)
    if settings.unit == "sentence":
        return kept
    # Pack consecutive sentences while the chunk stays within max_length sub-words ([CLS] and [SEP] included).
    budget = settings.max_length - 2
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for sentence in kept:
        length = count_tokens(sentence)
        if current and used + length > budget:
            chunks.append(" ".join(current))
            current, used = [], 0
        current.append(sentence)
        used += length
    if current:
        chunks.append(" ".join(current))
    return chunks


def read_segments(paths: Sequence[str | Path], settings: PretrainConfig, tokenizer) -> tuple[list[str], TextStats]:
    """Sentences (or packed chunks) of the documents under ``paths``; a sentence seen before is dropped."""
    stats = TextStats()
    documents = read_documents_text(paths, settings.text_field, stats)
    splitter = SentenceSplitter()

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    segments: list[str] = []
    seen: set[str] = set()
    for document in documents:
        segments += document_segments(document, splitter, settings, count_tokens, seen, stats)
        if settings.max_segments is not None and len(segments) >= settings.max_segments:
            segments = segments[: settings.max_segments]
            break
    stats.segments = len(segments)
    if not segments:
        where = ", ".join(str(path) for path in paths)
        raise DataError(Issue(Location(where), f"no text to pretrain on (documents read: {stats.documents}, sentences: {stats.sentences}, bad records: {stats.bad_records})"))
    return segments, stats


def heldout_split(segments: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held out), both in input order; the held-out set is a seeded random sample."""
    count = round(fraction * len(segments)) if len(segments) >= 2 else 0
    if count == 0:
        return list(segments), []
    chosen = set(random.Random(seed).sample(range(len(segments)), count))
    return [s for i, s in enumerate(segments) if i not in chosen], [s for i, s in enumerate(segments) if i in chosen]


# --- masking -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MlmTokens:
    """Tokenised segments: sub-word ids with special tokens, and which positions are special."""

    input_ids: list[list[int]]
    special: list[list[int]]

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_segments(tokenizer, segments: Sequence[str], max_length: int) -> tuple[MlmTokens, int]:
    """The tokens, and how many segments were longer than ``max_length``: those are cut into several
    sequences (each with its own special tokens) rather than truncated, so no text is thrown away."""
    if not segments:
        return MlmTokens([], []), 0
    encoded = tokenizer(
        list(segments),
        truncation=True,
        max_length=max_length,
        return_special_tokens_mask=True,
        return_overflowing_tokens=True,
    )
    rows_per_segment = Counter(encoded["overflow_to_sample_mapping"])
    split = sum(1 for rows in rows_per_segment.values() if rows > 1)
    return MlmTokens([list(ids) for ids in encoded["input_ids"]], [list(m) for m in encoded["special_tokens_mask"]]), split


def mlm_batch(
    tokens: MlmTokens, indices: Sequence[int], tokenizer, probability: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Padded inputs with BERT masking: of the chosen sub-words 80 % ``[MASK]``, 10 % random, 10 % kept.
    Every row masks at least one real sub-word so no batch has an empty loss."""
    width = max(len(tokens.input_ids[i]) for i in indices)
    pad = tokenizer.pad_token_id or 0
    input_ids = torch.full((len(indices), width), pad, dtype=torch.long)
    maskable = torch.zeros((len(indices), width), dtype=torch.bool)
    attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, index in enumerate(indices):
        ids = tokens.input_ids[index]
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        maskable[row, : len(ids)] = torch.tensor(tokens.special[index]) == 0
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & maskable
    for row in range(len(indices)):
        if not chosen[row].any() and maskable[row].any():
            candidates = maskable[row].nonzero().flatten()
            chosen[row, candidates[torch.randint(len(candidates), (1,), generator=generator)]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    draw = torch.rand(input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[chosen & (draw < 0.8)] = tokenizer.mask_token_id
    random_positions = chosen & (draw >= 0.8) & (draw < 0.9)
    masked[random_positions] = torch.randint(len(tokenizer), input_ids.shape, generator=generator)[random_positions]
    return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}


def mlm_loss(model, tokens: MlmTokens, tokenizer, probability: float, seed: int, batch_size: int = 64) -> float | None:
    """Mean masked-LM loss per masked sub-word over ``tokens`` with masks drawn from ``seed`` (so two
    calls with the same seed score the same masked positions); None when there is nothing to score."""
    if not len(tokens):
        return None
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(tokens), batch_size):
            batch = mlm_batch(tokens, range(start, min(start + batch_size, len(tokens))), tokenizer, probability, generator)
            masked = int((batch["labels"] != IGNORE_INDEX).sum())
            total += float(model(**batch).loss) * masked
            count += masked
    if was_training:
        model.train()
    return total / count if count else None


# --- model ---------------------------------------------------------------------------------------
@dataclass
class MlmModel:
    model: torch.nn.Module
    tokenizer: object
    source: str
    # Names of the head tensors that were not in the encoder directory (initialised fresh).
    fresh_head: list[str]

    @property
    def head_note(self) -> str:
        if not self.fresh_head:
            return "loaded from the encoder directory"
        return f"initialised fresh: the encoder has no masked-LM head ({len(self.fresh_head)} tensors new)"


def load_mlm_model(encoder: str) -> MlmModel:
    location = resolve_encoder(encoder)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(location, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load encoder '{encoder}' from '{location}' as a masked LM: {error}") from None
    tokenizer = AutoTokenizer.from_pretrained(location)
    if tokenizer.mask_token_id is None:
        raise ModelError(f"the tokenizer of '{encoder}' has no mask token; it cannot be trained as a masked LM")
    base_prefix = getattr(model, "base_model_prefix", "")
    fresh = sorted(key for key in info.get("missing_keys", ()) if not key.startswith(f"{base_prefix}.") and "position_ids" not in key)
    encoder_missing = sorted(key for key in info.get("missing_keys", ()) if key.startswith(f"{base_prefix}.") and "position_ids" not in key)
    if encoder_missing:
        raise ModelError(f"'{encoder}' lacks encoder weights for a masked LM: {', '.join(encoder_missing[:5])}")
    return MlmModel(model, tokenizer, location, fresh)


# --- training ------------------------------------------------------------------------------------
class MaskedBatches:
    """The trainer's batch source for pretraining: batches of similar length, shuffled with
    ``pretrain.seed + epoch``, masked on collation from a generator seeded the same way."""

    def __init__(self, tokens: MlmTokens, tokenizer, settings: PretrainConfig):
        self.tokens = tokens
        self.tokenizer = tokenizer
        self.settings = settings
        self.lengths = [len(ids) for ids in tokens.input_ids]
        steps = math.ceil(len(tokens) / settings.batch_size)
        self.steps_in_epoch = min(steps, settings.max_steps_per_epoch) if settings.max_steps_per_epoch is not None else steps
        self.generator = torch.Generator()

    def batches(self, epoch: int) -> list[list[int]]:
        self.generator = torch.Generator().manual_seed(self.settings.seed + epoch)
        return length_grouped_batches(self.lengths, self.settings.batch_size, self.settings.seed + epoch)[: self.steps_in_epoch]

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return mlm_batch(self.tokens, indices, self.tokenizer, self.settings.mlm_probability, self.generator)


def mlm_trainer(mlm: MlmModel, train_tokens: MlmTokens, heldout_tokens: MlmTokens, settings: PretrainConfig) -> Trainer:
    """The shared :class:`~conflict_events.training.loop.Trainer` with the masked-LM objective; its
    evaluation is the held-out loss (the score is its negative, so lower loss is better)."""
    batches = MaskedBatches(train_tokens, mlm.tokenizer, settings)
    optimiser_settings = OptimiserSettings.of_pretraining(settings)
    optimizer = build_optimizer(mlm.model, optimiser_settings)
    scheduler = build_scheduler(optimizer, optimiser_settings, batches.steps_in_epoch * settings.epochs)
    heldout_seed = settings.seed + HELDOUT_MASK_SEED

    def evaluate_heldout() -> tuple[dict, float | None]:
        loss = mlm_loss(mlm.model, heldout_tokens, mlm.tokenizer, settings.mlm_probability, heldout_seed)
        if loss is None:
            return {}, None
        return {"heldout_mlm_loss": loss, "heldout_perplexity": math.exp(min(loss, 50))}, -loss

    loop = LoopSettings(epochs=settings.epochs, early_stopping_patience=None, grad_clip=settings.grad_clip, sync_every=LOG_EVERY)
    return Trainer(mlm.model, MaskedLMLoss(), optimizer, scheduler, batches, evaluate_heldout, loop)


@dataclass
class PretrainResult:
    run_id: str
    encoder_dir: Path
    encoder_uri: str  # models:/<name>/<version> when registered, else runs:/<id>/encoder
    version: str | None
    mlm_head: str
    heldout_loss_before: float | None
    heldout_loss_after: float | None
    history: list[dict]
    stats: TextStats


def save_encoder(mlm: MlmModel, directory: Path) -> Path:
    """The masked-LM model + tokenizer as a Hugging Face directory (safetensors), written atomically."""
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    mlm.model.save_pretrained(str(partial), safe_serialization=True)
    mlm.tokenizer.save_pretrained(str(partial))
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return directory


def pretrain(config: Config, texts: Sequence[str | Path], *, show_progress: bool = True) -> PretrainResult:
    """Continue masked-LM training of ``config.model.encoder`` on the text under ``texts``, log it to
    MLflow (``tracking.experiment``) and register it as ``pretrain.registered_encoder``."""
    settings = config.pretrain
    if config.training.num_threads is not None:
        torch.set_num_threads(config.training.num_threads)
    torch.manual_seed(settings.seed)
    mlm = load_mlm_model(config.model.encoder)
    if mlm.fresh_head:
        logger.warning("encoder '%s': masked-LM head %s", config.model.encoder, mlm.head_note)
    segments, stats = read_segments(texts, settings, mlm.tokenizer)
    train_segments, heldout_segments = heldout_split(segments, settings.heldout_fraction, settings.seed)
    train_tokens, split = tokenize_segments(mlm.tokenizer, train_segments, settings.max_length)
    heldout_tokens, heldout_split_count = tokenize_segments(mlm.tokenizer, heldout_segments, settings.max_length)
    stats.train_segments, stats.heldout_segments = len(train_segments), len(heldout_segments)
    stats.train_sequences = len(train_tokens)
    stats.split_segments = split + heldout_split_count
    stats.train_tokens = sum(len(ids) for ids in train_tokens.input_ids)

    heldout_seed = settings.seed + HELDOUT_MASK_SEED
    history: list[dict] = []
    with tracking.start_training_run(config.tracking.experiment, run_name="pretrain") as run:
        tracking.log_config(config)
        tracking.log_run_tags(
            encoder=config.model.encoder,
            corpus="unlabeled text",
            extra={"run.kind": "pretrain", "model.source": mlm.source, "pretrain.mlm_head": mlm.head_note},
        )
        tracking.log_json({**stats.as_dict(), "texts": [str(path) for path in texts]}, "data/text_stats.json")
        before = mlm_loss(mlm.model, heldout_tokens, mlm.tokenizer, settings.mlm_probability, heldout_seed)
        if before is not None:
            tracking.log_metrics({"heldout_mlm_loss": before, "heldout_perplexity": math.exp(min(before, 50))}, step=0)
        trainer = mlm_trainer(mlm, train_tokens, heldout_tokens, settings)
        bar = tqdm(total=trainer.batches.steps_in_epoch * settings.epochs, disable=not show_progress, unit="step", dynamic_ncols=True)
        try:
            for event in trainer.fit():
                if isinstance(event, StepEvent):
                    bar.update(1)
                    if event.loss is not None:
                        bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
                        tracking.log_metrics({"train_mlm_loss_step": event.loss}, step=event.global_step)
                    continue
                metrics = {"train_mlm_loss": event.train_loss, "learning_rate": event.learning_rate, **event.dev_metrics}
                tracking.log_metrics(metrics, step=event.epoch)
                history.append({"epoch": event.epoch, **metrics})
                heldout = event.dev_metrics.get("heldout_mlm_loss")
                bar.write(
                    f"epoch {event.epoch}: train MLM loss {event.train_loss:.4f}"
                    + ("" if heldout is None else f", held-out {heldout:.4f}")
                )
        finally:
            bar.close()
        after = history[-1].get("heldout_mlm_loss") if history else None
        encoder_dir = save_encoder(mlm, Path(settings.output_dir))
        tracking.log_artifact_dir(encoder_dir, ENCODER_ARTIFACT)
        version = None
        encoder_uri = f"runs:/{run.info.run_id}/{ENCODER_ARTIFACT}"
        if settings.register_model:
            tags = {"source_encoder": config.model.encoder, "mlm_head": mlm.head_note}
            if after is not None:
                tags["heldout_mlm_loss"] = f"{after:.6f}"
            version = tracking.register_encoder(settings.registered_encoder, run, ENCODER_ARTIFACT, tags=tags)
            encoder_uri = f"models:/{settings.registered_encoder}/{version}"
            tracking.set_tags({"registry.encoder": settings.registered_encoder, "registry.version": version})
    return PretrainResult(
        run_id=run.info.run_id,
        encoder_dir=encoder_dir,
        encoder_uri=encoder_uri,
        version=version,
        mlm_head=mlm.head_note,
        heldout_loss_before=before,
        heldout_loss_after=after,
        history=history,
        stats=stats,
    )
