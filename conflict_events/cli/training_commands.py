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
from conflict_events.cli._common import CONFIG_OPTION, DATA_ROOT_OPTION, SET_OPTION, load_cli_config, reports_errors


@app.command("train")
@reports_errors
def train_command(
    config: str = CONFIG_OPTION,
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in training.output_dir."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fine-tune the joint model, evaluate on dev every epoch, log to MLflow and register the best model."""
    from conflict_events import tracking
    from conflict_events.training.evaluate import summary_line
    from conflict_events.training.trainer import train

    settings = load_cli_config(config, data_root, overrides)
    started = time.perf_counter()
    result = train(settings, resume=resume, show_progress=progress)
    elapsed = time.perf_counter() - started
    typer.echo(f"run {result.run_id} ({tracking.tracking_uri()}), {elapsed:.1f}s")
    typer.echo(
        f"epochs: {result.epochs_done}{' (early stop)' if result.stopped_early else ''}, best epoch {result.best_epoch}"
    )
    typer.echo(f"dev (best): {summary_line(result.dev_metrics)}")
    if result.test_metrics is not None:
        typer.echo(f"test:       {summary_line(result.test_metrics)}")
    if result.alias_decision is not None:
        typer.echo(f"registry: {result.alias_decision.summary()}")
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
    split: str = typer.Option("test", "--split", help="train, dev or test."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the metrics JSON here (default: stdout)."),
    decoding: Optional[Decoding] = typer.Option(
        None, "--decoding", help="BIO decoding instead of the model's own (model.decoding when it was trained)."
    ),
) -> None:
    """Evaluate a model on a split: event accuracy/macro-F1 and strict actor span P/R/F1."""
    from conflict_events.training.evaluate import evaluate, summary_line

    settings = load_cli_config(config, data_root, overrides)
    metrics = evaluate(model, settings, split, decoding=None if decoding is None else decoding.value)
    text = json.dumps(metrics, indent=2)
    if output is None:
        typer.echo(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n", encoding="utf-8")
    typer.echo(f"{split}: {summary_line(metrics)}", err=True)
    typer.echo(f"wrote {output}", err=True)
