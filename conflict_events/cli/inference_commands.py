"""``conflict-events predict``: the batch job (local or Spark engine) over document archives."""

from __future__ import annotations

from typing import Optional

import typer

from conflict_events.cli import app
from conflict_events.cli._common import BACKEND_OPTION, SET_OPTION, check_backend, reports_errors, with_backend
from conflict_events.config import InferenceConfig, load_config


def inference_settings(config: str | None, overrides: list[str] | None, backend: str | None = None) -> InferenceConfig:
    """The ``inference`` section of ``--config`` (with ``--set`` overrides), or the defaults; ``--backend`` last."""
    if config is None:
        if overrides:
            raise typer.BadParameter("--set needs --config", param_hint="--set")
        return with_backend(InferenceConfig(), backend)
    return with_backend(load_config(config, overrides=overrides or []).inference, backend)


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
    # A string, not a Path: the Spark engine's output may be a URI (hdfs://, s3a://), which Path would mangle.
    output: str = typer.Option(..., "--output", "-o", help="Output directory (records/, errors.jsonl, manifest.json)."),
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
    backend: Optional[str] = BACKEND_OPTION,
    engine: str = typer.Option("local", "--engine", help="local (this process) or spark (the executors read and predict)."),
    spark_master: Optional[str] = typer.Option(
        None, "--spark-master", help="Spark master URL for --engine spark. Default: spark-submit's, else local[*]."
    ),
    spark_conf: Optional[list[str]] = typer.Option(
        None, "--spark-conf", help="KEY=VALUE Spark setting for --engine spark, e.g. spark.driver.memory=2g (repeatable)."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show a progress bar: documents done of the counted total, sentences/s, ETA."
    ),
) -> None:
    """Predict event types and actors for every sentence of every document in the inputs."""
    inputs = list(inputs) + list(more_inputs or [])
    inference = inference_settings(config, overrides, backend)
    if engine == "local":
        from conflict_events.inference.batch import PredictJob, run_predict_job

        job = PredictJob.create(model, inputs, inference, output_format, text_field, id_field, batch_size)
        summary = run_predict_job(job, output, resume=resume, allow_new_inputs=allow_new_inputs, progress=progress)
    elif engine == "spark":
        if resume or allow_new_inputs:
            raise typer.BadParameter("the Spark engine has no --resume: rerun into a new directory", param_hint="--engine")
        from conflict_events.inference.spark import run_spark_job, spark_session

        summary = run_spark_job(
            model,
            inputs,
            output,
            inference=inference,
            output_format=output_format,
            text_field=text_field,
            id_field=id_field,
            batch_size=batch_size,
            spark=spark_session(spark_master, _spark_settings(spark_conf)),
        )
    else:
        raise typer.BadParameter(f"expected 'local' or 'spark'; got '{engine}'", param_hint="--engine")
    for line in summary.lines():
        typer.echo(line)
    typer.echo(f"output:    {output}")


def _spark_settings(pairs: list[str] | None) -> dict[str, str]:
    settings = {}
    for pair in pairs or []:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE; got '{pair}'", param_hint="--spark-conf")
        settings[key.strip()] = value
    return settings


@app.command("serve")
@reports_errors
def serve_command(
    model: str = typer.Option(..., "--model", "-m", help="models:/name@alias, models:/name/3 or runs:/<id>/model."),
    host: str = typer.Option("127.0.0.1", "--host", "-h", help="Address to listen on."),
    port: int = typer.Option(5000, "--port", "-p"),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", help="Bodies over this size get HTTP 413."),
    backend: Optional[str] = typer.Option(
        None, "--backend", callback=check_backend,
        help="Numeric backend, over the inference.backend the model was logged with (its model_config).",
    ),
) -> None:
    """Serve the model with MLflow's scoring server (as `mlflow models serve` does), behind a guard that
    answers 400/413 for bodies MLflow's parser would fail on with 500 (docs/INFERENCE.md, Serving)."""
    import uvicorn

    from conflict_events import tracking
    from conflict_events.inference.serving import RequestGuard

    overrides = {"backend": backend} if backend is not None else None
    app_ = RequestGuard(tracking.scoring_app(model, overrides), max_body_bytes=int(max_body_mb * 1024 * 1024))
    uvicorn.run(app_, host=host, port=port, log_level="info")
