"""``train(config)``: the whole fine-tuning run, wired together.

Seeds -> corpus -> model (fresh, or the last checkpoint on resume) -> features (tokenised once) ->
optimiser (layer-wise LR decay, warmup schedule) -> the recipe (objective and plugins, from the config in
``recipe.py``) -> :class:`~conflict_events.training.loop.Trainer`, whose events are consumed by three
listeners: the progress bar, the MLflow logger and the checkpointer -> reports of the best checkpoint on
dev (and test, when present) -> the model logged as a pyfunc, registered, and given the ``champion`` or
``challenger`` alias.

Checkpoints (``training.output_dir``):
- ``best/``  the joint model with the best dev selection score (safetensors, like any saved model), as
  evaluated (the weight average, when that plugin is on)
- ``last/``  the joint model after the last finished epoch + ``training_state.pt`` (the trainer's state:
  optimiser, scheduler, loop state, RNG states and every plugin's state; plus the MLflow run id; tensors
  and plain containers only, loaded with ``weights_only=True``). ``--resume`` continues from it, in the
  same MLflow run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from conflict_events import tracking
from conflict_events.config import Config
from conflict_events.corpora.corpus import load_corpus
from conflict_events.corpora.shift import ShiftedSet, shift_split
from conflict_events.errors import ConfigError, DataError, Issue, Location
from conflict_events.model import LoadedModel, build_configured_model, load_joint_model, save_joint_model
from conflict_events.schema import EventExample
from conflict_events.training import reports
from conflict_events.training.data import FeatureBatches, encode_examples
from conflict_events.training.evaluate import evaluate_adopting_thresholds, evaluate_loaded
from conflict_events.training.events import EpochEvent, Event, StepEvent
from conflict_events.training.loop import LoopSettings, LoopState, Trainer, seed_everything
from conflict_events.training.metrics import selection_score
from conflict_events.training.multicorpus import (
    AuxiliaryCorpus,
    MultiCorpusBatches,
    SharedEncoderModel,
    auxiliary_features,
    evaluate_auxiliary,
    load_auxiliary,
)
from conflict_events.training.optimisation import OptimiserSettings, build_optimizer, build_scheduler
from conflict_events.training.evaluation_data import (
    EvaluationSet,
    load_evaluation_set,
    set_digest,
    warn_if_trained_on,
    write_trained_on,
)
from conflict_events.training.promotion import PromotionDecision, gate
from conflict_events.training.recipe import TeacherObjective, training_recipe

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"


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
    alias_decision: PromotionDecision | None = None
    evaluation_metrics: dict | None = None
    history: list[dict] = field(default_factory=list)
    # The best checkpoint on the shifted dev set (data.shifted_dev); None when it is off.
    shifted_dev_metrics: dict | None = None
    selected_on: str = "dev"  # training.selection_split

    @property
    def selection_metrics(self) -> dict:
        """The metrics of the split the best epoch was selected on."""
        return self.shifted_dev_metrics if self.selected_on == "dev_shifted" and self.shifted_dev_metrics else self.dev_metrics


# --- checkpoints ---------------------------------------------------------------------------------
def _replace_directory(write: Callable[[Path], None], target: Path) -> None:
    """Write into a sibling folder first, so an interrupted save never leaves a half checkpoint."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def save_checkpoint(directory: Path, loaded: LoadedModel, trainer: Trainer, run_id: str) -> None:
    """The raw weights (not the evaluated ones) and the trainer's whole state, for resume."""

    def write(folder: Path) -> None:
        save_joint_model(loaded, folder)
        torch.save(
            {**trainer.state_dict(), "run_id": run_id, "label_schema": loaded.label_schema.to_json()},
            folder / STATE_FILE,
        )

    _replace_directory(write, directory)


def load_checkpoint_state(directory: Path) -> dict:
    path = directory / STATE_FILE
    if not path.is_file():
        raise ConfigError(f"nothing to resume: no checkpoint at {path} (training.output_dir)")
    return torch.load(path, weights_only=True)


# --- data ------------------------------------------------------------------------------------------
@dataclass
class Splits:
    train: list[EventExample]
    dev: list[EventExample]
    test: list[EventExample] | None
    # What data.policy dropped, per kind and split ("leakage.train": 6, ...); empty for splits given by a caller.
    dropped: dict[str, int] = field(default_factory=dict)
    # A cross-validation fold: train is rows `train_rows` of `pool`. The pool is what gets tokenised (once,
    # cached: training/data.py), so every fold, seed and recipe of a sweep reads the same features.
    pool: Sequence[EventExample] | None = None
    train_rows: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if (self.pool is None) != (self.train_rows is None):
            raise ValueError("Splits: pool and train_rows go together")
        if self.pool is not None and [self.pool[row] for row in self.train_rows] != list(self.train):
            raise ValueError("Splits: train is not the pool's train_rows")


def load_splits(config: Config) -> Splits:
    corpus = load_corpus(config)
    train = list(corpus.train)  # data.max_train_examples is applied by load_corpus
    if not train:
        raise DataError(Issue(Location(config.data.root), "the training split has no examples"))
    if not corpus.dev:
        raise DataError(Issue(Location(config.data.root), "the dev split has no examples"))
    dropped = corpus.policy_report.flat() if corpus.policy_report.active else {}
    return Splits(train, list(corpus.dev), list(corpus.test) if corpus.test else None, dropped)


# --- listeners -----------------------------------------------------------------------------------
class ProgressBar:
    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            self.bar.update(1)
            self.bar.set_description(f"epoch {event.epoch}")
            if event.loss is not None:
                self.bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        else:
            self.bar.set_postfix(loss=f"{event.train_loss:.4f}", dev=f"{event.score:.4f}")
            dev = event.dev_metrics.get("selection_score", event.score)
            shifted = event.dev_metrics.get("shifted")
            shown = f", shifted dev score {shifted['selection_score']:.4f}" if shifted else ""
            self.bar.write(
                f"epoch {event.epoch}: train loss {event.train_loss:.4f}, dev score {dev:.4f}{shown}"
                f"{' (best)' if event.is_best else ''}"
            )

    def close(self) -> None:
        self.bar.close()


def log_event_to_mlflow(event: Event) -> None:
    if isinstance(event, StepEvent):
        if event.loss is not None:
            tracking.log_metrics({"train_loss_step": event.loss}, step=event.global_step)
        return
    parts = {f"train_{name}_loss": value for name, value in event.train_loss_parts.items()}
    tracking.log_metrics({"train_loss": event.train_loss, **parts, "learning_rate": event.learning_rate}, step=event.epoch)
    tracking.log_evaluation(event.dev_metrics, prefix="dev_", step=event.epoch)
    if event.dev_metrics.get("shifted"):
        tracking.log_evaluation(event.dev_metrics["shifted"], prefix="dev_shifted_", step=event.epoch)
    for name, metrics in event.dev_metrics.get("auxiliary", {}).items():
        tracking.log_evaluation(metrics, prefix=f"dev_{name}_", step=event.epoch)
        if event.is_best:
            tracking.log_metrics(metrics, prefix=f"best_dev_{name}_")


class Checkpointer:
    """``best/`` gets the weights that were evaluated (the trainer's evaluation weights), ``last/`` the raw
    weights and the trainer's state to resume from."""

    def __init__(self, output_dir: Path, loaded: LoadedModel, trainer: Trainer, run_id: str, train: Sequence[EventExample]):
        self.output_dir = output_dir
        self.loaded, self.trainer, self.run_id = loaded, trainer, run_id
        self.train = train

    def __call__(self, event: Event) -> None:
        if not isinstance(event, EpochEvent):
            return
        if event.is_best:
            with self.trainer.evaluation_weights():
                _replace_directory(self._save_best, self.output_dir / "best")
        save_checkpoint(self.output_dir / "last", self.loaded, self.trainer, self.run_id)

    def _save_best(self, folder: Path) -> None:
        save_joint_model(self.loaded, folder)
        # What the model trained on travels with it: promotion and evaluation check it for leakage.
        write_trained_on(folder, self.train)


# --- the run ---------------------------------------------------------------------------------------
def _prepare_model(config: Config, resume_state: dict | None, last_dir: Path) -> LoadedModel:
    schema = config.label_schema
    if resume_state is None:
        return build_configured_model(config.model, schema)
    if resume_state["label_schema"] != schema.to_json():
        raise ConfigError(f"cannot resume from {last_dir}: its labels differ from the config's labels section")
    loaded = load_joint_model(last_dir)
    if loaded.settings.pooling != config.model.pooling:
        raise ConfigError(
            f"cannot resume from {last_dir}: model.pooling is {config.model.pooling} now and was "
            f"{loaded.settings.pooling} in that run"
        )
    layers = config.model.encoder_layers
    saved_layers = loaded.joint_model.encoder.config.num_hidden_layers
    if layers is not None and len(layers) != saved_layers:
        raise ConfigError(
            f"cannot resume from {last_dir}: model.encoder_layers keeps {len(layers)} layers now and that run's "
            f"encoder has {saved_layers}"
        )
    return loaded


def _feature_batches(features, settings, loaded: LoadedModel, multilabel: bool) -> FeatureBatches:
    pad = loaded.tokenizer.pad_token_id or 0
    return FeatureBatches(features, settings.batch_size, settings.seed, settings.max_steps_per_epoch, pad, multilabel)


def _dev_evaluation(
    loaded: LoadedModel,
    dev: Sequence[EventExample],
    config: Config,
    auxiliary: Sequence[AuxiliaryCorpus] = (),
    shifted: ShiftedSet | None = None,
) -> Callable[[], tuple[dict, float]]:
    """The trainer's evaluation: dev metrics and the selection score. A multilabel model adopts the
    decision threshold tuned on dev (``training.tune_threshold``), so ``best/`` is saved with it. The
    shifted dev set's metrics go under ``shifted``, scored with the thresholds dev just gave (it measures,
    it never tunes); the selection score is read on ``training.selection_split``. Each auxiliary corpus's
    dev metrics go under ``auxiliary`` (the selection score is the main corpus's)."""
    settings = config.training

    def evaluate_dev() -> tuple[dict, float]:
        metrics = evaluate_adopting_thresholds(
            loaded, dev, settings, config.inference.window_overlap, settings.tune_threshold, settings.selection_metric
        )
        if shifted is not None:
            metrics["shifted"], _ = evaluate_loaded(
                loaded, shifted.examples, settings.eval_batch_size, settings.selection_metric, config.inference.window_overlap
            )
        if auxiliary:
            metrics["auxiliary"] = evaluate_auxiliary(auxiliary, config)
        selected = metrics["shifted"] if settings.selection_split == "dev_shifted" else metrics
        return metrics, selected["selection_score"]

    return evaluate_dev


def train(
    config: Config,
    *,
    resume: bool = False,
    callbacks: Sequence[Callable[[Event], None]] = (),
    show_progress: bool = True,
    splits: Splits | None = None,
    teacher_objective: TeacherObjective | None = None,
    nested: bool = False,
    run_name: str | None = None,
) -> TrainingResult:
    """Fine-tune the joint model described by ``config``, track it in MLflow and register it.

    ``callbacks`` receive every progress event after the checkpoint of an epoch is written (a callback
    that raises interrupts training exactly like a crash would; ``resume=True`` then continues).

    For experiments (``training/sweep.py``, ``crossval.py``, ``distill.py``): ``splits`` trains and
    evaluates on the given examples instead of the configured corpus (a cross-validation fold);
    ``teacher_objective`` builds the joint objective that replaces the supervised loss (distillation);
    ``nested`` starts the MLflow run as a child of the active run, named ``run_name``.
    """
    settings = config.training
    if settings.num_threads is not None:
        torch.set_num_threads(settings.num_threads)
    output_dir = Path(settings.output_dir)
    last_dir = output_dir / "last"
    resume_state = load_checkpoint_state(last_dir) if resume else None

    # Named before seeding: MLflow draws its made-up names from `random`, which seeding makes repeat.
    run_name = run_name or default_run_name(config)
    seed_everything(settings.seed)
    splits = splits if splits is not None else load_splits(config)
    # Built from whatever dev this run has (carved, configured, a fold), with its own seeded streams.
    shifted = shift_split(splits.dev, config.data.shifted_dev) if config.data.shifted_dev.enabled else None
    loaded = _prepare_model(config, resume_state, last_dir)
    model = loaded.joint_model
    schema = loaded.label_schema
    # Windows as inference cuts long texts (inference.window_overlap), so document-level corpora train whole.
    features = encode_examples(
        splits.pool if splits.pool is not None else splits.train, loaded.tokenizer, schema, config.model.max_length,
        config.inference.window_overlap, rows=splits.train_rows,
    )
    batches: FeatureBatches | MultiCorpusBatches = _feature_batches(features, settings, loaded, schema.multilabel)
    trained: torch.nn.Module = model
    # Auxiliary corpora (config `auxiliary:`): their own heads on this encoder, their batches interleaved.
    auxiliary = load_auxiliary(config, loaded)
    if auxiliary:
        extra = auxiliary_features(auxiliary, loaded.tokenizer, config.model.max_length, config.inference.window_overlap)
        sources = [_feature_batches(f, settings, loaded, c.loaded.label_schema.multilabel) for f, c in zip(extra, auxiliary)]
        batches = MultiCorpusBatches([batches, *sources], settings.seed)
        trained = SharedEncoderModel(model, {corpus.name: corpus.loaded.joint_model for corpus in auxiliary})
    optimiser_settings = OptimiserSettings.of_training(settings)
    optimizer = build_optimizer(trained, optimiser_settings)
    scheduler = build_scheduler(optimizer, optimiser_settings, batches.steps_in_epoch * settings.epochs)
    encoded = splits.pool if splits.pool is not None else splits.train
    recipe = training_recipe(config, loaded, features, teacher_objective, examples=encoded)
    if auxiliary:
        recipe = recipe.around_auxiliary(auxiliary)
    trainer = Trainer(
        trained,
        recipe.objective,
        optimizer,
        scheduler,
        batches,
        _dev_evaluation(loaded, splits.dev, config, auxiliary, shifted),
        LoopSettings(epochs=settings.epochs, early_stopping_patience=settings.early_stopping_patience, grad_clip=settings.grad_clip),
        recipe.plugins,
    )
    if resume_state is not None:
        trainer.load_state_dict(resume_state, where=str(last_dir))

    # The set promotion is judged on, read before training so a missing file fails now, not after the run.
    evaluation = load_evaluation_set(config, splits.dev) if config.tracking.register_model else None
    run_id = resume_state["run_id"] if resume_state is not None else None
    with tracking.start_training_run(config.tracking.experiment, run_id=run_id, run_name=run_name, nested=nested) as run:
        run_id = run.info.run_id
        if resume_state is None:
            tracking.log_config(config)
            tracking.log_run_tags(
                encoder=config.model.encoder,
                corpus=config.tracking.corpus,
                extra={"model.source": loaded.source, **recipe.describe()},
            )
            tracking.log_json(
                reports.data_stats(config, {"train": splits.train, "dev": splits.dev, "test": splits.test}),
                "data/data_stats.json",
            )
            _log_datasets(config, splits, evaluation)
            if shifted is not None:
                _log_shifted_dev(shifted)
            tracking.set_tags({f"data.policy.dropped.{key}": str(count) for key, count in splits.dropped.items()})
            tracking.set_description(_run_description(config, recipe.describe(), splits, evaluation, shifted))
        else:
            tracking.log_run_tags(
                config.model.encoder, config.tracking.corpus, {"resumed_after_epoch": str(trainer.state.epochs_done)}
            )
        progress = ProgressBar(batches.steps_in_epoch * settings.epochs, trainer.state.global_step, show_progress)
        listeners = [progress, log_event_to_mlflow, Checkpointer(output_dir, loaded, trainer, run_id, splits.train), *callbacks]
        try:
            for event in trainer.fit():
                for listener in listeners:
                    listener(event)
        finally:
            progress.close()
        return _finish(config, splits, output_dir, trainer.state, run_id, evaluation, shifted)


def default_run_name(config: Config, label: str | None = None) -> str:
    """``<label or corpus>-<UTC time>-<4 hex>``: what the run is, and unique even for runs started in one second."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{label or config.tracking.corpus}-{stamp}-{os.urandom(2).hex()}"


def _log_datasets(config: Config, splits: Splits, evaluation: EvaluationSet | None) -> None:
    """The run's data as MLflow datasets ("Datasets used" in the UI), each with its digest and counts."""
    digests = {}
    for context, examples in (("train", splits.train), ("dev", splits.dev), ("test", splits.test)):
        if examples:
            digests[f"{context}.digest"] = set_digest(examples)
            tracking.log_examples_dataset(examples, context, digests[f"{context}.digest"], config.data.root, config.label_schema)
    tracking.set_tags(digests)
    if evaluation is not None and evaluation.name not in ("dev", "test"):
        tracking.log_examples_dataset(
            list(evaluation.examples), "evaluation", evaluation.digest, evaluation.description, config.label_schema
        )


def _log_shifted_dev(shifted: ShiftedSet) -> None:
    """What the shifted dev set is: its counts as params, its digest as a tag, a few examples as an artifact."""
    summary = shifted.summary()
    tracking.log_params({
        "data.shifted_dev.examples_changed": summary["examples_changed"],
        "data.shifted_dev.substitutions": summary["substitutions"],
        "data.shifted_dev.skipped": summary["skipped"],
    })
    tracking.set_tags({"dev_shifted.digest": set_digest(shifted.examples)})
    tracking.log_json({**summary, "samples": list(shifted.samples)}, "data/shifted_dev.json")


def _run_description(
    config: Config, recipe_tags: dict[str, str], splits: Splits, evaluation: EvaluationSet | None,
    shifted: ShiftedSet | None = None,
) -> str:
    plugins = recipe_tags.get("training.plugins", "none")
    lines = [
        f"Fine-tuning `{config.model.encoder}` on {config.tracking.corpus} ({len(splits.train)} training sentences, "
        f"{len(splits.dev)} dev) for up to {config.training.epochs} epochs; objective "
        f"`{recipe_tags.get('training.objective')}`, plugins: {plugins}.",
    ]
    if shifted is not None:
        lines.append(
            f"Also scored on the shifted dev set (entities substituted, seed {shifted.seed}: {shifted.changed} of "
            f"{len(shifted.examples)} sentences changed, {shifted.substitutions} substitutions); the best epoch is "
            f"selected on {config.training.selection_split}."
        )
    if evaluation is not None:
        lines.append(f"Promotion is judged on {evaluation.summary()}.")
    return "\n\n".join(lines)


def _best_values(metrics: dict, prefix: str) -> dict[str, float]:
    """The headline numbers of the best checkpoint, as ``<prefix><name>``."""
    return {
        f"{prefix}{name}": value
        for name, value in (
            ("event_accuracy", metrics["event_accuracy"]),
            ("event_macro_f1", metrics["event_macro_f1"]),
            ("actor_f1", metrics["actor_f1"]),
            ("filler_f1", metrics.get("filler_f1")),
            ("mean_f1", selection_score(metrics, "mean_f1")),
        )
        if value is not None
    }


def _finish(
    config: Config, splits: Splits, output_dir: Path, state: LoopState, run_id: str, evaluation: EvaluationSet | None,
    shifted: ShiftedSet | None = None,
) -> TrainingResult:
    """Evaluate the best checkpoint, log reports and the model, register it and decide its alias."""
    settings = config.training
    best_dir = output_dir / "best"
    best = load_joint_model(best_dir)
    schema = best.label_schema
    # Folds of a sweep, a distillation's splits or a hand-made dev file can share sentences with train.
    warn_if_trained_on(f"the model of run {run_id}", best_dir, splits.dev, "dev")
    overlap = config.inference.window_overlap
    dev_metrics, dev_predictions = evaluate_loaded(best, splits.dev, settings.eval_batch_size, settings.selection_metric, overlap)
    test_metrics = None
    shifted_metrics = None
    with tempfile.TemporaryDirectory() as scratch:
        report_dir = Path(scratch)
        reports.write_evaluation_reports(
            report_dir, dev_metrics, splits.dev, dev_predictions, schema, prefix="dev",
            title=f"dev, best epoch {state.best_epoch}",
        )
        if shifted is not None:
            shifted_metrics, shifted_predictions = evaluate_loaded(
                best, shifted.examples, settings.eval_batch_size, settings.selection_metric, overlap
            )
            reports.write_evaluation_reports(
                report_dir, shifted_metrics, shifted.examples, shifted_predictions, schema, prefix="dev_shifted",
                title=f"shifted dev, best epoch {state.best_epoch}",
            )
        if splits.test:
            test_metrics, test_predictions = evaluate_loaded(
                best, splits.test, settings.eval_batch_size, settings.selection_metric, overlap
            )
            reports.write_evaluation_reports(
                report_dir, test_metrics, splits.test, test_predictions, schema, prefix="test",
                title=f"test, best epoch {state.best_epoch}",
            )
        tracking.log_artifact_dir(report_dir, "reports")
    errors = reports.worst_errors(splits.dev, dev_predictions, schema)
    if errors:
        tracking.log_table(errors, "reports/worst_dev_errors.json")
    best_values = _best_values(dev_metrics, "best_dev_")
    if shifted_metrics is not None:
        best_values.update(_best_values(shifted_metrics, "best_dev_shifted_"))
    tracking.log_metrics({**best_values, "best_epoch": state.best_epoch or 0})
    if test_metrics is not None:
        tracking.log_evaluation(test_metrics, prefix="test_")
    evaluation_metrics = None
    if evaluation is not None:
        evaluation_metrics, _ = evaluate_loaded(
            best, list(evaluation.examples), settings.eval_batch_size, settings.selection_metric, overlap
        )
        tracking.log_evaluation(evaluation_metrics, prefix="eval_")
        tracking.set_tags({"evaluation.name": evaluation.name, "evaluation.digest": evaluation.digest,
                           "evaluation.description": evaluation.description})

    register = config.tracking.register_model
    model_info = None
    model_uri = None
    if config.tracking.log_model:
        model_info = tracking.log_joint_model(best_dir, config.tracking.registered_model if register else None, config.inference)
        model_uri = f"runs:/{run_id}/model"
        dev_dataset = tracking.examples_dataset(splits.dev, "dev", set_digest(splits.dev), config.data.root, schema)
        tracking.log_model_metrics(model_info, dev_metrics, dev_dataset, prefix="dev_", step=state.best_epoch or 0)
        if evaluation is not None and evaluation_metrics is not None and evaluation.name != "dev":
            dataset = tracking.examples_dataset(
                list(evaluation.examples), "evaluation", evaluation.digest, evaluation.description, schema
            )
            tracking.log_model_metrics(model_info, evaluation_metrics, dataset, prefix="eval_", step=state.best_epoch or 0)
    decision = None
    if register and model_info is not None and model_info.registered_model_version is not None:
        version = str(model_info.registered_model_version)
        model_uri = f"models:/{config.tracking.registered_model}/{version}"
        if config.tracking.promote and evaluation is not None:
            decision = gate(config, best_dir, version, evaluation)
            tracking.log_json(decision.to_json(), "registry/decision.json")
            tracking.set_tags(decision.tags())
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
        evaluation_metrics=evaluation_metrics,
        history=list(state.history),
        shifted_dev_metrics=shifted_metrics,
        selected_on=settings.selection_split,
    )
