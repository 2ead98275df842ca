"""``conflict-events evaluate-resolution``: actor resolution and event location on the team's gold set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from conflict_events.cli import app
from conflict_events.cli._common import SET_OPTION, reports_errors


@app.command("evaluate-resolution")
@reports_errors
def evaluate_resolution_cli(
    gold: Optional[Path] = typer.Option(
        None, "--gold", help="Gold set (JSONL, data/resolution_gold/gold.jsonl by default)."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Also score end to end with this model's sentences and actor spans (directory or MLflow URI)."
    ),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Read the inference section (resolution tables) of this config."),
    overrides: Optional[list[str]] = SET_OPTION,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the reports as JSON to this file."),
) -> None:
    """Country/sector accuracy, sector macro-F1, null-country precision, place F1 and event-country accuracy,
    with the gold actor spans (resolution alone) and, with --model, with the model's spans (end to end)."""
    from conflict_events.cli.inference_commands import inference_settings
    from conflict_events.errors import ConfigError
    from conflict_events.resolution import resolver_for
    from conflict_events.resolution.evaluation import DEFAULT_GOLD, format_report, read_gold, resolve_gold_spans, score

    settings = inference_settings(config, overrides)
    resolver = resolver_for(settings.resolution)
    if resolver is None:
        raise ConfigError("inference.resolution.enabled is false: there is nothing to evaluate")
    path = gold or DEFAULT_GOLD
    documents = read_gold(path)
    reports = {"gold_spans": score(documents, resolve_gold_spans(resolver, documents))}
    typer.echo(f"gold set: {path} ({len(documents)} documents)")
    typer.echo(format_report("with gold actor spans (resolution alone):", reports["gold_spans"]))
    if model is not None:
        from conflict_events.inference.resolution_eval import evaluate_end_to_end

        reports["predicted_spans"] = evaluate_end_to_end(model, documents, settings)
        typer.echo(format_report(f"with {model}'s sentences and actor spans (end to end):", reports["predicted_spans"]))
    if output is not None:
        output.write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"written: {output}")
