"""``conflict-events models ...``: the registry as an ML engineer uses it (list, compare, promote, rollback)."""

from __future__ import annotations

from typing import Optional

import typer

from conflict_events.cli import app
from conflict_events.cli._common import CONFIG_OPTION, DATA_ROOT_OPTION, SET_OPTION, load_cli_config, reports_errors

models_app = typer.Typer(help="List, compare, promote and roll back registered model versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")

NAME_OPTION = typer.Option(None, "--name", help="Registered model name (default: tracking.registered_model of --config).")


def _registered_name(name: str | None, config: str | None) -> str:
    if name:
        return name
    if config:
        return load_cli_config(config, None, None).tracking.registered_model
    raise typer.BadParameter("give --name or --config")


def _model_uri(name: str, reference: str) -> str:
    """A bare version number or alias of ``name``, or any model URI / directory as is."""
    if reference.isdigit():
        return f"models:/{name}/{reference}"
    if reference in ("champion", "challenger"):
        return f"models:/{name}@{reference}"
    return reference


@models_app.command("list")
@reports_errors
def list_command(name: Optional[str] = NAME_OPTION, config: Optional[str] = typer.Option(None, "--config", "-c")) -> None:
    """Every version with its aliases, the evaluation set it was judged on and its score."""
    from conflict_events import tracking

    registered = _registered_name(name, config)
    typer.echo(f"{'version':<8} {'aliases':<20} {'evaluation':<34} {'metric':<16} {'score':>7} {'vs champion':>12}  reason")
    for version in tracking.model_versions(registered):
        tags = version.tags or {}
        evaluation = f"{tags.get('promotion.evaluation.name', '-')} {tags.get('promotion.evaluation.digest', '')}".strip()
        score = tags.get("promotion.candidate_score") or "-"
        difference = tags.get("promotion.difference") or "-"
        typer.echo(
            f"{version.version:<8} {','.join(version.aliases or []) or '-':<20} {evaluation:<34} "
            f"{tags.get('promotion.metric', '-'):<16} {_short(score):>7} {_short(difference):>12}  {tags.get('promotion.reason', '')}"
        )


def _short(value: str) -> str:
    try:
        return f"{float(value):.4f}"
    except ValueError:
        return value


@models_app.command("compare")
@reports_errors
def compare_command(
    first: str = typer.Argument(..., help="A version number, champion/challenger, or a model URI/directory."),
    second: str = typer.Argument(..., help="The same, for the second model."),
    config: str = CONFIG_OPTION,
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    split: Optional[str] = typer.Option(None, "--split", help="train, dev, test or file; default: the config's evaluation set."),
    shown: int = typer.Option(15, "--show", help="How many disagreeing sentences to print (all are logged)."),
) -> None:
    """Both models on the same evaluation data, side by side: every metric with its paired bootstrap
    interval, per-class and per-role F1 deltas, the sentences where they disagree; logged as an MLflow run."""
    from conflict_events.training.evaluation_data import load_evaluation_set, load_named_set
    from conflict_events.training.promotion import compare_models, log_comparison

    settings = load_cli_config(config, data_root, overrides)
    name = settings.tracking.registered_model
    evaluation = load_named_set(settings, split) if split else load_evaluation_set(settings)
    comparison = compare_models(settings, _model_uri(name, first), _model_uri(name, second), evaluation)
    for line in comparison.lines(shown):
        typer.echo(line)
    typer.echo(f"logged as run {log_comparison(settings, comparison)}")


@models_app.command("promote")
@reports_errors
def promote_command(
    version: str = typer.Argument(..., help="The version to make champion."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the alias history)."),
    name: Optional[str] = NAME_OPTION,
    config: Optional[str] = typer.Option(None, "--config", "-c"),
) -> None:
    """Move `champion` to VERSION by hand (the move and its reason go into the alias history)."""
    from conflict_events import tracking

    registered = _registered_name(name, config)
    previous = tracking.promote_version(registered, version, reason)
    typer.echo(f"{registered}: champion v{previous or '-'} -> v{version} ({reason})")


@models_app.command("rollback")
@reports_errors
def rollback_command(
    reason: str = typer.Option("rollback", "--reason", help="Why (kept in the alias history)."),
    name: Optional[str] = NAME_OPTION,
    config: Optional[str] = typer.Option(None, "--config", "-c"),
) -> None:
    """Give `champion` back to the version that held it before the latest move."""
    from conflict_events import tracking

    registered = _registered_name(name, config)
    old, new = tracking.rollback_champion(registered, reason)
    typer.echo(f"{registered}: champion v{old} -> v{new} ({reason})")
