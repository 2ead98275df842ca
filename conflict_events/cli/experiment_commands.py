"""``conflict-events sweep``, ``compare``, ``pretrain`` and ``distill``: thin wrappers over
:func:`conflict_events.training.sweep.run_sweep`, :mod:`conflict_events.training.compare`,
:func:`conflict_events.training.pretrain.pretrain` and :func:`conflict_events.training.distill.distill`
(see docs/EXPERIMENTS.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from conflict_events.cli import app
from conflict_events.cli._common import CONFIG_OPTION, DATA_ROOT_OPTION, SET_OPTION, load_cli_config, reports_errors


@app.command("sweep")
@reports_errors
def sweep_command(
    config: str = CONFIG_OPTION,
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    grid: Optional[list[str]] = typer.Option(
        None, "--grid", help="key=v1,v2,... values to try (YAML scalars, like --set); repeat for a full grid."
    ),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Runs per combination, with training.seed + 0, 1, ..."),
    folds: Optional[int] = typer.Option(
        None, "--folds", min=2, help="K-fold cross-validation on train: each run is scored on its held-out fold."
    ),
    log_models: bool = typer.Option(False, "--log-models/--no-log-models", help="Log each child's model (not registered)."),
    progress: bool = typer.Option(False, "--progress/--no-progress", help="Show each child's progress bar."),
) -> None:
    """Train a grid of recipe overrides x seeds (x folds) in nested MLflow runs; report mean ± std and the winner."""
    from conflict_events import tracking
    from conflict_events.training.sweep import describe, parse_grid, run_sweep

    settings = load_cli_config(config, data_root, overrides)
    axes = [parse_grid(text) for text in grid or []]

    def report(child) -> None:
        fold = "" if child.fold is None else f" fold {child.fold}"
        score = child.metrics.get("selection_score")
        typer.echo(
            f"  combination {child.combination} seed {child.seed}{fold}: {settings.training.selection_metric} "
            f"{'n/a' if score is None else f'{score:.4f}'} (run {child.run_id})"
        )

    started = time.perf_counter()
    result = run_sweep(settings, axes, seeds=seeds, folds=folds, log_models=log_models, show_progress=progress, on_child=report)
    typer.echo("")
    typer.echo(result.table())
    typer.echo("")
    winner = result.winner.metrics["selection_score"]
    typer.echo(
        f"winner: combination {result.winner.index} ({describe(result.winner.overrides)}): "
        f"{result.selection_metric} {winner.mean:.4f} over {result.winner.runs} run(s)"
    )
    typer.echo(f"sweep run {result.parent_run_id} ({tracking.tracking_uri()}), {len(result.children)} child runs, "
               f"{time.perf_counter() - started:.1f}s")


@app.command("compare")
@reports_errors
def compare_command(
    recipes: list[str] = typer.Argument(
        ..., help="Sweep run ids (every combination) or RUN_ID:COMBINATION; the first recipe is the reference."
    ),
    metric: Optional[list[str]] = typer.Option(
        None, "--metric", help="Best-epoch dev metric to compare (repeatable; default event_macro_f1 and actor_f1)."
    ),
    require: Optional[list[str]] = typer.Option(
        None, "--require", help="metric=min_gain: say for each candidate whether it beats the reference by that much and by > 2 se."
    ),
    reference: int = typer.Option(0, "--reference", min=0, help="Which recipe (by its # in the table) the others are paired with."),
    per_fold: bool = typer.Option(False, "--per-fold/--no-per-fold", help="Also print every run, a row per fold and seed."),
) -> None:
    """Compare recipes of finished sweeps, paired by fold and seed (mean ± sd, paired differences ± se)."""
    from conflict_events import tracking
    from conflict_events.training.compare import (
        DEFAULT_METRICS,
        compare,
        format_comparison,
        format_per_fold,
        load_recipes,
        parse_requirement,
    )

    requirements = [parse_requirement(text) for text in require or []]
    metrics = list(metric or DEFAULT_METRICS)
    metrics += [r.metric for r in requirements if r.metric not in metrics]
    tracking.configure_tracking()
    comparison = compare(load_recipes(recipes, metrics), metrics, reference)
    typer.echo(format_comparison(comparison, requirements))
    if per_fold:
        typer.echo("")
        typer.echo(format_per_fold(comparison))


@app.command("pretrain")
@reports_errors
def pretrain_command(
    config: str = CONFIG_OPTION,
    text: list[Path] = typer.Option(
        ..., "--text", help="Unlabeled text: .tsv (IndiaPoliceEvents articles), .txt, .jsonl, .csv, .parquet, or a folder (repeatable)."
    ),
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Continue masked-LM training of model.encoder on unlabeled text; log it and register the encoder."""
    from conflict_events import tracking
    from conflict_events.training.pretrain import pretrain

    settings = load_cli_config(config, data_root, overrides)
    started = time.perf_counter()
    result = pretrain(settings, text, show_progress=progress)
    stats = result.stats
    typer.echo(f"run {result.run_id} ({tracking.tracking_uri()}), {time.perf_counter() - started:.1f}s")
    typer.echo(
        f"text: {stats.documents} documents ({stats.bad_records} unreadable), {stats.segments} segments "
        f"({stats.train_segments} train, {stats.heldout_segments} held out), {stats.train_tokens} training sub-words"
    )
    typer.echo(f"masked-LM head: {result.mlm_head}")
    if result.heldout_loss_before is not None and result.heldout_loss_after is not None:
        typer.echo(f"held-out MLM loss: {result.heldout_loss_before:.4f} -> {result.heldout_loss_after:.4f}")
    typer.echo(f"encoder: {result.encoder_uri} (local copy: {result.encoder_dir})")
    typer.echo(f"use it with: --set model.encoder={result.encoder_uri}")


@app.command("distill")
@reports_errors
def distill_command(
    config: str = CONFIG_OPTION,
    teacher: Optional[list[str]] = typer.Option(
        None, "--teacher", help="A teacher model: models:/name/3, runs:/<id>/model or a directory (repeat; default distill.teachers)."
    ),
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Distil an ensemble of teachers into one student; log, register and alias it like `train`."""
    from conflict_events import tracking
    from conflict_events.training.distill import distill
    from conflict_events.training.evaluate import summary_line

    settings = load_cli_config(config, data_root, overrides)
    started = time.perf_counter()
    outcome = distill(settings, teacher or None, show_progress=progress)
    result = outcome.training
    typer.echo(f"run {result.run_id} ({tracking.tracking_uri()}), {time.perf_counter() - started:.1f}s")
    typer.echo(f"teachers ({len(outcome.teachers)}): {', '.join(outcome.teachers)}")
    if outcome.unlabeled is not None:
        typer.echo(f"unlabeled text: {outcome.unlabeled.summary()}")
    typer.echo(f"ensemble dev:      {summary_line(outcome.ensemble_dev_metrics)}")
    typer.echo(f"student dev (best): {summary_line(result.dev_metrics)}")
    if result.test_metrics is not None:
        typer.echo(f"student test:       {summary_line(result.test_metrics)}")
    if result.alias_decision is not None:
        typer.echo(f"registry: {result.alias_decision.summary()}")
    typer.echo(f"model: {result.model_uri}")
