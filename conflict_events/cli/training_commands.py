"""``conflict-events train`` and ``conflict-events evaluate``: thin wrappers over
:func:`conflict_events.training.trainer.train` and :func:`conflict_events.training.evaluate.evaluate`."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from conflict_events.cli import app
from conflict_events.cli._common import (
    BACKEND_OPTION, CONFIG_OPTION, DATA_ROOT_OPTION, SET_OPTION, load_cli_config, reports_errors, with_backend,
)


@app.command("train")
@reports_errors
def train_command(
    config: str = CONFIG_OPTION,
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in training.output_dir."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    promote: bool = typer.Option(
        True, "--promote/--no-promote", help="Let the promotion gate set the new version's alias (--no-promote: register only)."
    ),
) -> None:
    """Fine-tune the joint model, evaluate on dev every epoch, log to MLflow, register the best model and
    judge it against the champion on the evaluation set."""
    from conflict_events import tracking
    from conflict_events.training.evaluate import summary_line
    from conflict_events.training.trainer import default_run_name, train

    settings = load_cli_config(config, data_root, overrides)
    if not promote:
        settings = settings.model_copy(update={"tracking": settings.tracking.model_copy(update={"promote": False})})
    label = Path(config).stem + (f"[{','.join(overrides)}]" if overrides else "")
    started = time.perf_counter()
    result = train(settings, resume=resume, show_progress=progress, run_name=default_run_name(settings, label))
    elapsed = time.perf_counter() - started
    typer.echo(f"run {result.run_id} ({tracking.tracking_uri()}), {elapsed:.1f}s")
    typer.echo(
        f"epochs: {result.epochs_done}{' (early stop)' if result.stopped_early else ''}, best epoch {result.best_epoch}"
    )
    typer.echo(f"dev (best): {summary_line(result.dev_metrics)}")
    if result.test_metrics is not None:
        typer.echo(f"test:       {summary_line(result.test_metrics)}")
    if result.evaluation_metrics is not None and result.alias_decision is not None:
        typer.echo(f"evaluation ({result.alias_decision.evaluation['name']}): {summary_line(result.evaluation_metrics)}")
    if result.alias_decision is not None:
        typer.echo(f"registry: {result.alias_decision.summary()}")
    elif result.model_uri and result.model_uri.startswith("models:/"):
        typer.echo("registry: registered, aliases untouched (--no-promote)")
    typer.echo(f"model: {result.model_uri}")


class Decoding(str, Enum):
    """The BIO decodings of :func:`conflict_events.alignment.decode_bio`."""

    viterbi = "viterbi"
    greedy = "greedy"


@app.command("evaluate")
@reports_errors
def evaluate_command(
    model: str = typer.Option(..., "--model", "-m", help="models:/name@alias, runs:/<id>/model or a model directory."),
    config: str = CONFIG_OPTION,
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    split: Optional[str] = typer.Option(
        None, "--split",
        help="train, dev, test, file (evaluation.files) or dev_shifted (dev with its entities substituted, "
        "data.shifted_dev); default: the config's evaluation set.",
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics JSON here (default: stdout)."),
    decoding: Optional[Decoding] = typer.Option(
        None, "--decoding", help="BIO decoding instead of the model's own (model.decoding when it was trained)."
    ),
    backend: Optional[str] = BACKEND_OPTION,
) -> None:
    """Evaluate a model on a split: event accuracy/macro-F1 (micro- and example-based F1 for multilabel)
    and strict actor span P/R/F1. Prints the summary; the metrics JSON goes to --output."""
    from conflict_events.training.evaluate import evaluate, summary_line
    from conflict_events.training.evaluation_data import evaluation_split_name

    settings = load_cli_config(config, data_root, overrides)
    settings = settings.model_copy(update={"inference": with_backend(settings.inference, backend)})
    split = split or evaluation_split_name(settings)
    metrics = evaluate(model, settings, split, decoding=None if decoding is None else decoding.value)
    typer.echo(f"{split} ({metrics['examples']} sentences, {metrics['digest']}): {summary_line(metrics)}")
    requested = "" if metrics["backend_requested"] == metrics["backend"] else f" (requested {metrics['backend_requested']})"
    typer.echo(f"backend: {metrics['backend']}{requested}: {metrics['backend_reason']}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")
