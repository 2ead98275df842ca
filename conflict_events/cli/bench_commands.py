"""``conflict-events bench``: our predictor against hand-written HF pipelines on the same model and text."""

from __future__ import annotations

from typing import Optional

import typer

from conflict_events.cli import app
from conflict_events.cli._common import reports_errors


@app.command("bench")
@reports_errors
def bench_cli(
    model: str = typer.Option(..., "--model", "-m", help="Model directory or MLflow URI (models:/name@alias, runs:/...)."),
    data_root: Optional[str] = typer.Option(
        "../shared/data/conflibert", "--data-root", help="Folder holding IndiaPoliceEvents_docs/dev.tsv; "
        "the bundled data/sample/articles are used when it is absent."
    ),
    max_sentences: Optional[int] = typer.Option(None, "--max-sentences", min=1, help="Use only the first N sentences."),
    repetitions: int = typer.Option(3, "--repetitions", min=1, help="Timed runs per phase (the median is reported)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Sentences per model batch on our path."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also time the int8 backend and its agreement with fp32."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch intra-op threads (default: torch's)."),
) -> None:
    """Sentences/s of `predict` vs transformers pipelines; the last line is `ratio <ours/baseline>`."""
    from conflict_events.inference.bench import run_benchmark

    run_benchmark(model, data_root, max_sentences, repetitions, batch_size, int8, threads, echo=typer.echo)
