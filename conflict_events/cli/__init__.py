"""The ``conflict-events`` command line: a thin layer over importable functions.

Each command group lives in its own module and registers itself on the apps defined here:
``data_commands`` (data validate/stats/fetch), ``training_commands`` (train, evaluate, sweep, pretrain),
``inference_commands`` (predict, bench).
"""

from __future__ import annotations

import importlib

import typer

from conflict_events.inference.allocator import limit_onednn_primitive_cache

# Before any command runs a model: the cap is read when oneDNN builds its first primitive.
limit_onednn_primitive_cache()

app = typer.Typer(
    name="conflict-events",
    help="Fine-tune, track, serve and batch-run a joint event-type + actor-role model on conflict news.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Validate, summarise and fetch corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Modules that add commands to `app` / `data_app` on import. A module that does not exist yet is skipped
# so the CLI stays usable while command groups are added.
for _module in (
    "data_commands", "training_commands", "inference_commands", "bench_commands", "experiment_commands", "registry_commands",
    "resolution_commands",
):
    try:
        importlib.import_module(f"conflict_events.cli.{_module}")
    except ModuleNotFoundError as error:
        if error.name != f"conflict_events.cli.{_module}":
            raise
