"""``train(config)``: the whole fine-tuning run, wired together.

Seeds -> corpus -> model (fresh, or the last checkpoint on resume) -> features (tokenised once) ->
optimiser with layer-wise LR decay + warmup schedule -> :func:`~conflict_events.training.loop.train_while_improving`,
whose events are consumed by three subscribers: the progress bar, the MLflow logger and the checkpointer
-> reports of the best checkpoint on dev (and test, when present) -> the model logged as a pyfunc,
registered, and given the ``champion`` or ``challenger`` alias.

Checkpoints (``training.output_dir``):
- ``best/``  the joint model with the best dev selection score (safetensors, like any saved model)
- ``last/``  the joint model after the last finished epoch + ``training_state.pt`` (optimiser, scheduler,
  loop state, RNG states and the MLflow run id: tensors and plain containers only, loaded with
  ``weights_only=True``). ``--resume`` continues from it, in the same MLflow run.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from conflict_events import tracking
from conflict_events.config import Config, TrainingConfig
from conflict_events.errors import ConfigError, DataError, Issue, Location
from conflict_events.model import HeadSettings, JointModel, LoadedModel, LossSettings, build_joint_model, load_joint_model, save_joint_model
from conflict_events.schema import EventExample
from conflict_events.training import reports
from conflict_events.training.averaging import WeightAverager, averaged_weights
from conflict_events.training.consistency import ConsistencyRegularised
from conflict_events.training.data import ActorSwapper, class_weights, encode_examples, epoch_batches, steps_per_epoch
from conflict_events.training.evaluate import evaluate_loaded
from conflict_events.training.metrics import selection_score
from conflict_events.training.loop import EpochEvent, LoopSettings, LoopState, StepEvent, train_while_improving

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
Event = StepEvent | EpochEvent


@dataclass
class TrainingResult:
    run_id: str
    best_model_dir: Path
    best_epoch: int | None
    epochs_done: int
    stopped_early: bool
    dev_metrics: dict
    test_metrics: dict | None = None
    model_uri: str | None = None
    alias_decision: tracking.AliasDecision | None = None
    history: list[dict] = field(default_factory=list)


# --- reproducibility -----------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
    }


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])


# --- optimisation ----------------------------------------------------------------------------------
def encoder_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, ``i + 1`` for transformer layer ``i``, ``num_layers`` for anything above."""
    match = re.search(r"\.layers?\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    if "embeddings" in name:
        return 0
    return num_layers


def parameter_groups(model: JointModel, settings: TrainingConfig) -> list[dict]:
    """Layer-wise LR decay: the top encoder layer trains at ``learning_rate``, each layer below at
    ``layerwise_lr_decay`` times the one above, embeddings lowest; heads at ``head_learning_rate``
    (default ``learning_rate``). Biases and LayerNorm weights get no weight decay."""
    num_layers = int(getattr(model.encoder.config, "num_hidden_layers", 0))
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name.startswith("encoder."):
            depth = min(encoder_depth(name, num_layers), num_layers)
            rate = settings.learning_rate * settings.layerwise_lr_decay ** (num_layers - depth)
        else:
            rate = settings.head_learning_rate or settings.learning_rate
        no_decay = parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((rate, 0.0 if no_decay else settings.weight_decay), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


def build_optimizer(model: JointModel, settings: TrainingConfig) -> torch.optim.Optimizer:
    # The fused kernel updates all parameters in one pass: 11 ms a step for MiniLM on 2 cores against
    # 65 ms for the default per-parameter loop, which was 17 % of a CAMEO epoch (docs/BENCHMARKS.md).
    return torch.optim.AdamW(parameter_groups(model, settings), lr=settings.learning_rate, fused=True)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: TrainingConfig, total_steps: int):
    from transformers import get_scheduler

    return get_scheduler(
        SCHEDULES[settings.schedule],
        optimizer,
        num_warmup_steps=int(settings.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


# --- checkpoints ---------------------------------------------------------------------------------
def _replace_directory(write: Callable[[Path], None], target: Path) -> None:
    """Write into a sibling folder first, so an interrupted save never leaves a half checkpoint."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def save_checkpoint(
    directory: Path, loaded: LoadedModel, optimizer, scheduler, state: LoopState, run_id: str,
    averager: WeightAverager | None = None,
) -> None:
    """The raw (not averaged) weights and everything resume needs, the weight average included."""

    def write(folder: Path) -> None:
        save_joint_model(loaded, folder)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "loop": state.to_dict(),
                "rng": rng_state(),
                "run_id": run_id,
                "label_schema": loaded.label_schema.to_json(),
                **({"weight_average": averager.state_dict()} if averager is not None else {}),
            },
            folder / STATE_FILE,
        )

    _replace_directory(write, directory)


def load_checkpoint_state(directory: Path) -> dict:
    path = directory / STATE_FILE
    if not path.is_file():
        raise ConfigError(f"nothing to resume: no checkpoint at {path} (training.output_dir)")
    return torch.load(path, weights_only=True)


def _restore_weight_average(averager: WeightAverager | None, resume_state: dict, last_dir: Path) -> None:
    saved = resume_state.get("weight_average")
    if (averager is None) != (saved is None):
        raise ConfigError(
            f"cannot resume from {last_dir}: training.weight_averaging is "
            f"{'off' if averager is None else 'on'} now and was {'off' if saved is None else 'on'} in that run"
        )
    if averager is not None:
        averager.load_state_dict(saved)


# --- data ------------------------------------------------------------------------------------------
@dataclass
class Splits:
    train: list[EventExample]
    dev: list[EventExample]
    test: list[EventExample] | None


def load_splits(config: Config) -> Splits:
    from conflict_events.corpora.corpus import load_corpus

    corpus = load_corpus(config)
    train = list(corpus.train)  # data.max_train_examples is applied by load_corpus
    if not train:
        raise DataError(Issue(Location(config.data.root), "the training split has no examples"))
    if not corpus.dev:
        raise DataError(Issue(Location(config.data.root), "the dev split has no examples"))
    return Splits(train, list(corpus.dev), list(corpus.test) if corpus.test else None)


# --- subscribers -----------------------------------------------------------------------------------
class ProgressBar:
    def __init__(self, total: int, initial: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            self.bar.update(1)
            self.bar.set_description(f"epoch {event.epoch}")
            if event.loss is not None:
                self.bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        else:
            self.bar.set_postfix(loss=f"{event.train_loss:.4f}", dev=f"{event.score:.4f}")
            self.bar.write(
                f"epoch {event.epoch}: train loss {event.train_loss:.4f}, dev score {event.score:.4f}"
                f"{' (best)' if event.is_best else ''}"
            )

    def close(self) -> None:
        self.bar.close()


def log_event_to_mlflow(event: Event) -> None:
    if isinstance(event, StepEvent):
        if event.loss is not None:
            tracking.log_metrics({"train_loss_step": event.loss}, step=event.global_step)
        return
    tracking.log_metrics(
        {
            "train_loss": event.train_loss,
            "train_event_loss": event.train_event_loss,
            "train_role_loss": event.train_role_loss,
            "learning_rate": event.learning_rate,
        },
        step=event.epoch,
    )
    tracking.log_metrics(event.dev_metrics, step=event.epoch, prefix="dev_")


class Checkpointer:
    """``best/`` gets the weights that were evaluated (the averaged ones under weight averaging),
    ``last/`` the raw weights to resume from."""

    def __init__(
        self, output_dir: Path, loaded: LoadedModel, optimizer, scheduler, state: LoopState, run_id: str,
        averager: WeightAverager | None = None,
    ):
        self.output_dir = output_dir
        self.loaded, self.optimizer, self.scheduler, self.state, self.run_id = loaded, optimizer, scheduler, state, run_id
        self.averager = averager

    def __call__(self, event: Event) -> None:
        if not isinstance(event, EpochEvent):
            return
        if event.is_best:
            with averaged_weights(self.averager):
                _replace_directory(lambda folder: save_joint_model(self.loaded, folder), self.output_dir / "best")
        save_checkpoint(
            self.output_dir / "last", self.loaded, self.optimizer, self.scheduler, self.state, self.run_id, self.averager
        )


# --- the run ---------------------------------------------------------------------------------------
def _prepare_model(config: Config, resume_state: dict | None, last_dir: Path) -> LoadedModel:
    schema = config.label_schema
    if resume_state is None:
        settings = HeadSettings(
            max_length=config.model.max_length, dropout=config.model.dropout, decoding=config.model.decoding,
            pooling=config.model.pooling,
        )
        return build_joint_model(config.model.encoder, schema, settings)
    if resume_state["label_schema"] != schema.to_json():
        raise ConfigError(f"cannot resume from {last_dir}: its labels differ from the config's labels section")
    loaded = load_joint_model(last_dir)
    if loaded.settings.pooling != config.model.pooling:
        raise ConfigError(
            f"cannot resume from {last_dir}: model.pooling is {config.model.pooling} now and was "
            f"{loaded.settings.pooling} in that run"
        )
    return loaded


def train(
    config: Config,
    *,
    resume: bool = False,
    callbacks: Sequence[Callable[[Event], None]] = (),
    show_progress: bool = True,
    splits: Splits | None = None,
    wrap_model: Callable[[LoadedModel], torch.nn.Module] | None = None,
    nested: bool = False,
    run_name: str | None = None,
) -> TrainingResult:
    """Fine-tune the joint model described by ``config``, track it in MLflow and register it.

    ``callbacks`` receive every progress event after the checkpoint of an epoch is written (a callback
    that raises interrupts training exactly like a crash would; ``resume=True`` then continues).

    For experiments (``training/sweep.py``, ``crossval.py``, ``ensemble.py``): ``splits`` trains and
    evaluates on the given examples instead of the configured corpus (a cross-validation fold);
    ``wrap_model`` returns the module the loop calls instead of the joint model (it must return the joint
    model's ``JointOutput`` with a loss; distillation adds the teachers' soft targets there); ``nested``
    starts the MLflow run as a child of the active run, named ``run_name``.
    """
    settings = config.training
    if settings.num_threads is not None:
        torch.set_num_threads(settings.num_threads)
    output_dir = Path(settings.output_dir)
    last_dir = output_dir / "last"
    resume_state = load_checkpoint_state(last_dir) if resume else None

    seed_everything(settings.seed)
    splits = splits if splits is not None else load_splits(config)
    loaded = _prepare_model(config, resume_state, last_dir)
    model = loaded.model
    schema = loaded.label_schema
    features = encode_examples(splits.train, loaded.tokenizer, schema, config.model.max_length)
    steps = steps_per_epoch(len(features), settings.batch_size, settings.max_steps_per_epoch)
    optimizer = build_optimizer(model, settings)
    scheduler = build_scheduler(optimizer, settings, steps * settings.epochs)
    averager = WeightAverager(model, settings.weight_averaging) if settings.weight_averaging is not None else None
    state = LoopState()
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        state = LoopState(**resume_state["loop"])
        restore_rng_state(resume_state["rng"])
        _restore_weight_average(averager, resume_state, last_dir)

    loss_settings = LossSettings(
        event_weight=settings.loss_weights.event,
        role_weight=settings.loss_weights.actors,
        label_smoothing=settings.label_smoothing,
        event_class_weights=(
            class_weights(features, len(schema.event_names)) if settings.class_weighting and not schema.multilabel else None
        ),
    )
    swapper = (
        ActorSwapper(features, schema, settings.actor_swap_probability, config.model.max_length)
        if settings.actor_swap_probability > 0
        else None
    )
    pad_id = loaded.tokenizer.pad_token_id or 0

    def batches_for_epoch(epoch: int):
        return epoch_batches(
            features, settings.batch_size, settings.seed + epoch, settings.max_steps_per_epoch, pad_id,
            schema.multilabel, swapper,
        )

    def evaluate_dev() -> tuple[dict, float]:
        metrics, _ = evaluate_loaded(
            loaded, splits.dev, settings.eval_batch_size, settings.selection_metric,
            tune=schema.multilabel and settings.tune_threshold,
        )
        return metrics, metrics["selection_score"]

    loop_settings = LoopSettings(
        epochs=settings.epochs,
        steps_in_epoch=steps,
        early_stopping_patience=settings.early_stopping_patience,
        grad_clip=settings.grad_clip,
        loss_settings=loss_settings,
    )

    run_id = resume_state["run_id"] if resume_state is not None else None
    trained_module = wrap_model(loaded) if wrap_model is not None else model
    if settings.consistency_weight > 0:
        trained_module = ConsistencyRegularised(trained_module, model.multilabel, settings.consistency_weight)
    with tracking.start_training_run(config.tracking.experiment, run_id=run_id, run_name=run_name, nested=nested) as run:
        run_id = run.info.run_id
        if resume_state is None:
            tracking.log_config(config)
            tracking.log_run_tags(
                encoder=config.model.encoder, corpus=config.tracking.corpus, extra={"model.source": loaded.source}
            )
            tracking.log_json(
                reports.data_stats(config, {"train": splits.train, "dev": splits.dev, "test": splits.test}),
                "data/data_stats.json",
            )
        else:
            tracking.log_run_tags(config.model.encoder, config.tracking.corpus, {"resumed_after_epoch": str(state.epochs_done)})
        progress = ProgressBar(steps * settings.epochs, state.global_step, show_progress)
        subscribers = [
            progress,
            log_event_to_mlflow,
            Checkpointer(output_dir, loaded, optimizer, scheduler, state, run_id, averager),
            *callbacks,
        ]
        try:
            for event in train_while_improving(
                trained_module, optimizer, scheduler, batches_for_epoch, evaluate_dev, loop_settings, state, averager
            ):
                for subscriber in subscribers:
                    subscriber(event)
        finally:
            progress.close()
        return _finish(config, splits, output_dir, state, run_id)


def _finish(config: Config, splits: Splits, output_dir: Path, state: LoopState, run_id: str) -> TrainingResult:
    """Evaluate the best checkpoint, log reports and the model, register it and decide its alias."""
    settings = config.training
    best_dir = output_dir / "best"
    best = load_joint_model(best_dir)
    schema = best.label_schema
    dev_metrics, dev_predictions = evaluate_loaded(best, splits.dev, settings.eval_batch_size, settings.selection_metric)
    test_metrics = None
    with tempfile.TemporaryDirectory() as scratch:
        report_dir = Path(scratch)
        reports.write_evaluation_reports(report_dir, dev_metrics, splits.dev, dev_predictions, schema, prefix="dev")
        if splits.test:
            test_metrics, test_predictions = evaluate_loaded(
                best, splits.test, settings.eval_batch_size, settings.selection_metric
            )
            reports.write_evaluation_reports(report_dir, test_metrics, splits.test, test_predictions, schema, prefix="test")
        tracking.log_artifact_dir(report_dir, "reports")
    errors = reports.worst_errors(splits.dev, dev_predictions, schema)
    if errors:
        tracking.log_table(errors, "reports/worst_dev_errors.json")
    best_values = {
        f"best_dev_{name}": value
        for name, value in (
            ("event_accuracy", dev_metrics["event_accuracy"]),
            ("event_macro_f1", dev_metrics["event_macro_f1"]),
            ("actor_f1", dev_metrics["actor_f1"]),
            ("mean_f1", selection_score(dev_metrics, "mean_f1")),
        )
        if value is not None
    }
    tracking.log_metrics({**best_values, "best_epoch": state.best_epoch or 0})
    if test_metrics is not None:
        tracking.log_metrics(test_metrics, prefix="test_")

    register = config.tracking.register_model
    model_info = None
    model_uri = None
    if config.tracking.log_model:
        model_info = tracking.log_joint_model(best_dir, config.tracking.registered_model if register else None)
        model_uri = f"runs:/{run_id}/model"
    decision = None
    if register and model_info is not None and model_info.registered_model_version is not None:
        metric = f"best_dev_{settings.selection_metric}"
        decision = tracking.assign_alias(
            config.tracking.registered_model,
            model_info.registered_model_version,
            metric,
            best_values.get(metric, dev_metrics["selection_score"]),
        )
        tracking.record_alias_decision(decision)
        model_uri = f"models:/{config.tracking.registered_model}/{decision.version}"
        logger.info("registry: %s", decision.summary())
    return TrainingResult(
        run_id=run_id,
        best_model_dir=best_dir,
        best_epoch=state.best_epoch,
        epochs_done=state.epochs_done,
        stopped_early=state.stopped_early,
        dev_metrics=dev_metrics,
        test_metrics=test_metrics,
        model_uri=model_uri,
        alias_decision=decision,
        history=list(state.history),
    )
