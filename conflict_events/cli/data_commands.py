"""``conflict-events data validate | stats | fetch``: thin wrappers over :mod:`conflict_events.corpora`.

Exit codes: 0 success, 1 data errors (or a failed fetch), 2 configuration errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from conflict_events.cli import data_app
from conflict_events.cli._common import (
    CONFIG_OPTION,
    DATA_ROOT_OPTION,
    SET_OPTION,
    fail,
    load_cli_config,
    reports_errors,
)
from conflict_events.corpora.corpus import Corpus, load_corpus
from conflict_events.corpora.fetch import FetchError, fetch_corpus
from conflict_events.corpora.merge import MergeReport
from conflict_events.corpora.stats import corpus_stats, format_stats

DATA_ERRORS_EXIT = 1


@data_app.command("validate")
@reports_errors
def validate_command(
    config: str = CONFIG_OPTION,
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    show_unpaired: bool = typer.Option(
        False, "--show-unpaired", help="List the sentences the class/actor merge could not pair."
    ),
) -> None:
    """Check every configured data file; print issues, merge counts, what data.policy dropped and split sizes."""
    corpus = load_corpus(load_cli_config(config, data_root, overrides), strict=False)
    for issue in corpus.issues:
        typer.echo(str(issue))
    for name, report in corpus.merges.items():
        typer.echo(f"{name} merge: {report.summary()}")
        if show_unpaired:
            typer.echo(_unpaired_listing(report))
    # Only with a policy configured, so the output for the default (`error`) is what it always was.
    if corpus.policy_report.active:
        typer.echo(corpus.policy_report.summary())
    typer.echo(_split_sizes(corpus))
    typer.echo(f"{len(corpus.errors)} errors, {len(corpus.warnings)} warnings")
    if corpus.errors:
        raise typer.Exit(DATA_ERRORS_EXIT)


@data_app.command("stats")
@reports_errors
def stats_command(
    config: str = CONFIG_OPTION,
    data_root: Optional[str] = DATA_ROOT_OPTION,
    overrides: Optional[list[str]] = SET_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Label distribution, actor spans per role, sentence lengths and labeled layers per split."""
    corpus = load_corpus(load_cli_config(config, data_root, overrides), strict=False)
    stats = corpus_stats(corpus)
    typer.echo(json.dumps(stats, indent=2) if as_json else format_stats(stats))
    if corpus.errors:
        typer.echo(f"{len(corpus.errors)} data errors: run `conflict-events data validate` for details", err=True)
        raise typer.Exit(DATA_ERRORS_EXIT)


@data_app.command("fetch")
@reports_errors
def fetch_command(
    corpus: str = typer.Argument(..., help="Corpus to fetch (cameo)."),
    dest: Path = typer.Option(..., "--dest", help="Folder to write into (laid out like upstream data/)."),
    mirror: Optional[Path] = typer.Option(
        None, "--from", help="Copy from this local folder (laid out like upstream data/) instead of downloading."
    ),
) -> None:
    """Download (or copy from a mirror) the upstream files, verifying pinned SHA-256 checksums."""
    try:
        fetched = fetch_corpus(corpus, dest, mirror)
    except FetchError as problem:
        fail(str(problem), code=DATA_ERRORS_EXIT)
    for item in fetched:
        typer.echo(item.describe())
    typer.echo(f"wrote {sum(item.status == 'fetched' for item in fetched)} files under {dest}")


def _split_sizes(corpus: Corpus) -> str:
    test = "not present" if corpus.test is None else str(len(corpus.test))
    return f"splits: train {len(corpus.train)}, dev {len(corpus.dev)} ({corpus.dev_origin}), test {test}"


def _unpaired_listing(report: MergeReport) -> str:
    revised_events = {pair.events_id for pair in report.revised}
    revised_actors = {pair.actors_id for pair in report.revised}
    lines = [f"  reworded pairs ({len(report.revised)}):"]
    lines += [f"    {pair.events_id} ~ {pair.actors_id} (similarity {pair.similarity})" for pair in report.revised]
    lonely_events = [e for e in report.unpaired_events if e.id not in revised_events]
    lonely_actors = [e for e in report.unpaired_actors if e.id not in revised_actors]
    lines.append(f"  only in {report.events_file} ({len(lonely_events)}):")
    lines += [f"    {example.id}: {example.text}" for example in lonely_events]
    lines.append(f"  only in {report.actors_file} ({len(lonely_actors)}):")
    lines += [f"    {example.id}: {example.text}" for example in lonely_actors]
    return "\n".join(lines)
