"""``conflict-events predict``: the batch job (local or Spark engine) over document archives."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from conflict_events.cli import app
from conflict_events.cli._common import SET_OPTION, reports_errors
from conflict_events.config import InferenceConfig, load_config


def inference_settings(config: str | None, overrides: list[str] | None) -> InferenceConfig:
    """The ``inference`` section of ``--config`` (with ``--set`` overrides), or the defaults."""
    if config is None:
        if overrides:
            raise typer.BadParameter("--set needs --config", param_hint="--set")
        return InferenceConfig()
    return load_config(config, overrides=overrides or []).inference


@app.command("predict")
@reports_errors
def predict_cli(
    model: str = typer.Option(..., "--model", "-m", help="Model directory or MLflow URI (models:/name@alias, runs:/...)."),
    inputs: list[str] = typer.Option(
        ...,
        "--input",
        "-i",
        help="File, directory or glob of .jsonl/.jsonl.gz/.csv/.parquet/.txt/.tsv; several may follow one --input.",
    ),
    # `--input a b c`: click binds only `a` to the option; the other paths arrive here, in order.
    more_inputs: Optional[list[str]] = typer.Argument(None, hidden=True),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory (records/, errors.jsonl, manifest.json)."),
    output_format: str = typer.Option("parquet", "--format", help="Record shard format: parquet or jsonl."),
    text_field: str = typer.Option("text", "--text-field", help="Field/column holding the document text."),
    id_field: Optional[str] = typer.Option(
        None,
        "--id-field",
        help="Field/column holding the document id; every CSV/Parquet file (JSONL record) must have it. "
        "Default: 'id' where present, else <file stem>-<line>.",
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Sentences per model batch."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted job in --output (same inputs and model)."),
    allow_new_inputs: bool = typer.Option(
        False, "--allow-new-inputs", help="With --resume: predict input files the job did not have as new shards."
    ),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Read the inference section of this config."),
    overrides: Optional[list[str]] = SET_OPTION,
    engine: str = typer.Option("local", "--engine", help="local (this process) or spark (mlflow spark_udf)."),
    spark_master: str = typer.Option("local[*]", "--spark-master", help="Spark master URL for --engine spark."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a docs/s progress bar."),
) -> None:
    """Predict event types and actors for every sentence of every document in the inputs."""
    inputs = list(inputs) + list(more_inputs or [])
    inference = inference_settings(config, overrides)
    if engine == "local":
        from conflict_events.inference.batch import PredictJob, run_predict_job

        job = PredictJob.create(model, inputs, inference, output_format, text_field, id_field, batch_size)
        summary = run_predict_job(job, output, resume=resume, allow_new_inputs=allow_new_inputs, progress=progress)
    elif engine == "spark":
        if resume or allow_new_inputs:
            raise typer.BadParameter("the Spark engine has no --resume: rerun into a new directory", param_hint="--engine")
        from conflict_events.inference.spark import run_spark_job

        summary = run_spark_job(
            model,
            inputs,
            output,
            inference=inference,
            output_format=output_format,
            text_field=text_field,
            id_field=id_field,
            batch_size=batch_size,
            master=spark_master,
        )
    else:
        raise typer.BadParameter(f"expected 'local' or 'spark'; got '{engine}'", param_hint="--engine")
    for line in summary.lines():
        typer.echo(line)
    typer.echo(f"output:    {output}")


@app.command("serve")
@reports_errors
def serve_command(
    model: str = typer.Option(..., "--model", "-m", help="models:/name@alias, models:/name/3 or runs:/<id>/model."),
    host: str = typer.Option("127.0.0.1", "--host", "-h", help="Address to listen on."),
    port: int = typer.Option(5000, "--port", "-p"),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", help="Bodies over this size get HTTP 413."),
) -> None:
    """Serve the model with MLflow's scoring server (as `mlflow models serve` does), behind a guard that
    answers 400/413 for bodies MLflow's parser would fail on with 500 (docs/INFERENCE.md, Serving)."""
    import uvicorn

    from conflict_events import tracking
    from conflict_events.inference.serving import RequestGuard

    app_ = RequestGuard(tracking.scoring_app(model), max_body_bytes=int(max_body_mb * 1024 * 1024))
    uvicorn.run(app_, host=host, port=port, log_level="info")
