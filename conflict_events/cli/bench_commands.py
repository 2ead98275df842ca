"""``conflict-events bench``: our predictor against hand-written HF pipelines on the same model and text;
``bench-e2e``: ``predict`` over files against the predictor alone, with the time breakdown."""

from __future__ import annotations

from typing import Optional

import typer

from conflict_events.cli import app
from conflict_events.cli._common import INFERENCE_BACKENDS, check_backend, reports_errors

# The options both commands take, with the same meaning.
MODEL = typer.Option(..., "--model", "-m", help="Model directory or MLflow URI (models:/name@alias, runs:/...).")
DATA_ROOT = typer.Option(
    "../shared/data/conflibert", "--data-root", help="Folder holding IndiaPoliceEvents_docs/dev.tsv; "
    "the bundled data/sample/articles are used when it is absent."
)
THREADS = typer.Option(None, "--threads", min=1, help="torch intra-op threads (default: torch's).")


@app.command("bench")
@reports_errors
def bench_cli(
    model: str = MODEL,
    data_root: Optional[str] = DATA_ROOT,
    max_sentences: Optional[int] = typer.Option(None, "--max-sentences", min=1, help="Use only the first N sentences."),
    repetitions: int = typer.Option(3, "--repetitions", min=1, help="Timed runs per phase (the median is reported)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Sentences per model batch on our path."),
    backend: Optional[str] = typer.Option(
        None, "--backend", callback=check_backend,
        help=f"Backend of 'ours' ({', '.join(INFERENCE_BACKENDS)}; default: inference.backend's default, auto, "
        "what predict runs).",
    ),
    compare: str = typer.Option(
        "int8", "--compare", help="Comma-separated further backends to time against fp32, or 'none'."
    ),
    threads: Optional[int] = THREADS,
    peers: bool = typer.Option(
        True, "--peers/--no-peers", help="Also time the baseline's pipelines with the models in ONNX Runtime (fp32, int8)."
    ),
) -> None:
    """Sentences/s of `predict` vs transformers pipelines; the last lines are `ratio_vs_best_peer <ours/best peer>`
    and `ratio <ours/baseline>`."""
    from conflict_events.inference.bench import run_benchmark

    others = [] if compare.strip().lower() in ("", "none") else [name.strip() for name in compare.split(",") if name.strip()]
    run_benchmark(
        model, data_root, max_sentences, repetitions, batch_size, others, threads, echo=typer.echo, backend=backend, peers=peers
    )


@app.command("bench-e2e")
@reports_errors
def bench_e2e_cli(
    model: str = MODEL,
    data_root: Optional[str] = DATA_ROOT,
    max_documents: Optional[int] = typer.Option(None, "--max-documents", min=1, help="Use only the first N articles."),
    repetitions: int = typer.Option(
        1, "--repetitions", min=1,
        help="Rounds, each the predictor then predict per producer (medians reported, and each round's ratio).",
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="inference.batch_size of both phases."),
    backend: Optional[str] = typer.Option(
        None, "--backend", callback=check_backend,
        help=f"Backend of both phases ({', '.join(INFERENCE_BACKENDS)}; default: auto, what predict runs).",
    ),
    threads: Optional[int] = THREADS,
    producers: str = typer.Option(
        "none,process", "--producer", help="Comma-separated inference.producer modes to time predict with."
    ),
) -> None:
    """`predict` JSONL -> Parquet end to end vs the predictor alone on the same sentences, with the stage
    breakdown; the last lines are `end_to_end_vs_predictor <ratio> (producer <mode>)`."""
    from conflict_events.inference.bench_e2e import run_end_to_end

    modes = [mode.strip() for mode in producers.split(",") if mode.strip()]
    run_end_to_end(
        model, data_root, max_documents, repetitions, batch_size, threads, backend, modes, echo=typer.echo
    )
