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
    backend: Optional[str] = typer.Option(
        None, "--backend", help="Backend of 'ours' (torch, bf16, int8, onnx; default: inference.backend's default, what predict runs)."
    ),
    compare: str = typer.Option(
        "int8", "--compare", help="Comma-separated further backends to time against fp32, or 'none'."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch intra-op threads (default: torch's)."),
) -> None:
    """Sentences/s of `predict` vs transformers pipelines; the last line is `ratio <ours/baseline>`."""
    from conflict_events.inference.bench import run_benchmark

    others = [] if compare.strip().lower() in ("", "none") else [name.strip() for name in compare.split(",") if name.strip()]
    run_benchmark(model, data_root, max_sentences, repetitions, batch_size, others, threads, echo=typer.echo, backend=backend)
