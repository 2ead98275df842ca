"""Pieces shared by the command modules: error handling and the common config options."""

from __future__ import annotations

import functools
import logging
from typing import Callable, TypeVar, get_args

import typer

from conflict_events.config import Config, InferenceConfig, load_config
from conflict_events.errors import ConflictEventsError, DataError

F = TypeVar("F", bound=Callable)

CONFIG_OPTION = typer.Option(..., "--config", "-c", help="YAML config file (see configs/).")
DATA_ROOT_OPTION = typer.Option(None, "--data-root", help="Override data.root from the config.")
SET_OPTION = typer.Option(
    None, "--set", help="Override any config key, e.g. --set training.epochs=3 (repeatable)."
)
# The names InferenceConfig.backend accepts (conflict_events/backends.py::BACKENDS), read from the config schema.
INFERENCE_BACKENDS: tuple[str, ...] = get_args(InferenceConfig.model_fields["backend"].annotation)


def check_backend(value: str | None) -> str | None:
    if value is not None and value not in INFERENCE_BACKENDS:
        raise typer.BadParameter(f"expected one of {', '.join(INFERENCE_BACKENDS)}; got '{value}'")
    return value


BACKEND_OPTION = typer.Option(
    None, "--backend", callback=check_backend,
    help=f"Numeric backend ({', '.join(INFERENCE_BACKENDS)}; docs/INFERENCE.md, Backends). Sets inference.backend, "
    "over the config file and --set; default: the config's, else auto (bf16 where the CPU has native bf16).",
)


def with_backend(inference: InferenceConfig, backend: str | None) -> InferenceConfig:
    """``inference`` with ``--backend`` applied (None: unchanged). The option writes ``inference.backend``, the
    one place the backend is read from, so it reaches the predictor, the manifest and the records alike."""
    return inference if backend is None else inference.model_copy(update={"backend": backend})


def fail(message: str, code: int = 2) -> None:
    """Print a one-paragraph error (no traceback) and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def reports_errors(command: F) -> F:
    """Turn the project's own errors into a clean message and exit code 2 instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return command(*args, **kwargs)
        except DataError as error:
            # Its text is its issues, each led by its own severity ("error: file:line: ..."): no second prefix.
            typer.echo(str(error), err=True)
            raise typer.Exit(2) from None
        except ConflictEventsError as error:
            fail(str(error))

    return wrapper  # type: ignore[return-value]


def load_cli_config(config: str, data_root: str | None, overrides: list[str] | None) -> Config:
    return load_config(config, overrides=overrides or [], data_root=data_root)
