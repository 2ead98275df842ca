"""The joint model as an MLflow pyfunc, logged with *models-from-code*.

``pyfunc_model.py`` (next to this file) is the model's code: MLflow copies it into the model and runs it
to get the :class:`ConflictEventsPyfunc` instance; the joint-model directory travels as the artifact
``joint_model``. The pyfunc wraps the same :class:`~conflict_events.inference.predictor.Predictor` as the
batch job, so serving, ``spark_udf`` and ``conflict-events predict`` return the same records.

Input: a DataFrame with ``text`` (string, required) and ``id`` (string, optional; the row position when
absent). Output (``layout="sentences"``, the default): one row per sentence with the record columns.
``layout="documents"`` returns one row per input document with a single column ``records`` holding the
JSON list of its sentence records: ``spark_udf`` needs exactly one output row per input row.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ParamSchema, ParamSpec
from mlflow.types.schema import Array, ColSpec, Map, Object, Property, Schema

from conflict_events.config import InferenceConfig
from conflict_events.errors import ModelError
from conflict_events.inference.allocator import limit_onednn_primitive_cache
from conflict_events.inference.predictor import RECORD_COLUMNS, Predictor, model_fingerprint
from conflict_events.model import JOINT_CONFIG_FILE
from conflict_events.schema import Document

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
JOINT_MODEL_ARTIFACT = "joint_model"
LAYOUTS = ("sentences", "documents")
# What `--env-manager local` needs is already in this venv; the list records it for other env managers.
# The project itself (conflict-events) must be installed where the model is served: the model code imports it.
_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "mlflow", "pandas", "pyarrow", "pysbd",
                 "pydantic", "pyyaml", "numpy")
INPUT_EXAMPLE = pd.DataFrame(
    [{"id": "example-1", "text": "Rebels attacked an army post near the border on Monday. The government condemned the attack."}]
)


class ConflictEventsPyfunc(mlflow.pyfunc.PythonModel):
    """``load_context`` loads the joint model from the ``joint_model`` artifact and builds the Predictor."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.max_document_chars = InferenceConfig().max_document_chars

    def load_context(self, context) -> None:
        limit_onednn_primitive_cache()  # a serving or Spark worker process: before its first batch
        settings = InferenceConfig(**(context.model_config or {}))
        model_dir = context.artifacts[JOINT_MODEL_ARTIFACT]
        self.max_document_chars = settings.max_document_chars
        self.predictor = Predictor.from_uri(
            model_dir,
            batch_size=settings.batch_size,
            window_overlap=settings.window_overlap,
            model_version=model_fingerprint(model_dir),
            backend=settings.backend,
        )
        # The artifact's temp path means nothing to a client; name the model by what identifies it.
        self.predictor.model_uri = "pyfunc"

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.predictor is None:
            raise MlflowException("the model was not loaded (load_context did not run)")
        params = params or {}
        layout = params.get("layout") or "sentences"
        if layout not in LAYOUTS:
            raise _bad_request(f"params.layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        documents = self._documents(model_input)
        predictor = self.predictor
        saved = predictor.model_uri, predictor.model_version
        predictor.model_uri = params.get("model_uri") or saved[0]
        predictor.model_version = params.get("model_version") or saved[1]
        try:
            if layout == "documents":
                grouped = predictor.predict_by_document(documents)
                return pd.DataFrame({"records": [json.dumps(records) for records in grouped]})
            return pd.DataFrame(predictor.predict_documents(documents), columns=list(RECORD_COLUMNS))
        finally:
            predictor.model_uri, predictor.model_version = saved

    def _documents(self, model_input: Any) -> list[Document]:
        if isinstance(model_input, dict):
            model_input = pd.DataFrame([model_input])
        elif isinstance(model_input, list):
            model_input = pd.DataFrame(model_input)
        if not isinstance(model_input, pd.DataFrame):
            raise _bad_request(f"expected a table with a 'text' column; got {type(model_input).__name__}")
        if "text" not in model_input.columns:
            raise _bad_request(f"the input has no 'text' column (columns: {', '.join(map(str, model_input.columns))})")
        ids = model_input["id"] if "id" in model_input.columns else pd.Series([None] * len(model_input))
        documents = []
        for row, (doc_id, text) in enumerate(zip(ids, model_input["text"])):
            if not isinstance(text, str):
                raise _bad_request(f"row {row}: 'text' must be a string; got {_type_name(text)}")
            if len(text) > self.max_document_chars:
                raise _bad_request(
                    f"row {row}: text has {len(text)} characters, over the limit of {self.max_document_chars} "
                    "(inference.max_document_chars)"
                )
            documents.append(Document(str(row) if _missing(doc_id) else str(doc_id), text))
        return documents


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _type_name(value: Any) -> str:
    return "null" if _missing(value) else type(value).__name__


def _bad_request(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE is answered with HTTP 400 by the scoring server.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def model_signature() -> ModelSignature:
    actor = Object(
        [
            Property("role", "string"),
            Property("text", "string"),
            Property("char_start", "long"),
            Property("char_end", "long"),
            Property("score", "double"),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "doc_id"),
            ColSpec("long", "sentence_index"),
            ColSpec("long", "char_start"),
            ColSpec("long", "char_end"),
            ColSpec("string", "text"),
            ColSpec("string", "event_type", required=False),
            ColSpec("long", "event_code", required=False),
            ColSpec(Array("string"), "event_types"),
            ColSpec(Map("double"), "event_scores"),
            ColSpec(Array(actor), "actors"),
            ColSpec("string", "model_uri"),
            ColSpec("string", "model_version", required=False),
        ]
    )
    inputs = Schema([ColSpec("string", "id", required=False), ColSpec("string", "text")])
    params = ParamSchema(
        [
            ParamSpec("layout", "string", "sentences"),
            ParamSpec("model_uri", "string", ""),
            ParamSpec("model_version", "string", ""),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def pip_requirements() -> list[str]:
    requirements = []
    for package in _REQUIREMENTS:
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            requirements.append(package)
    return requirements


def _model_kwargs(model_dir: Path, inference: InferenceConfig | None) -> dict[str, Any]:
    model_dir = Path(model_dir)
    if not (model_dir / JOINT_CONFIG_FILE).is_file():
        raise ModelError(f"'{model_dir}' is not a saved conflict-events model (no {JOINT_CONFIG_FILE})")
    settings = inference or InferenceConfig()
    return {
        "python_model": str(MODEL_CODE),
        "artifacts": {JOINT_MODEL_ARTIFACT: str(model_dir)},
        "signature": model_signature(),
        "input_example": INPUT_EXAMPLE,
        "pip_requirements": pip_requirements(),
        "model_config": {
            "batch_size": settings.batch_size,
            "max_document_chars": settings.max_document_chars,
            "window_overlap": settings.window_overlap,
        },
    }


def log_pyfunc_model(
    model_dir: Path,
    artifact_path: str = "model",
    registered_model_name: str | None = None,
    *,
    inference: InferenceConfig | None = None,
) -> ModelInfo:
    """Log a saved joint-model directory as a pyfunc model (in the active run, if any) and optionally
    register it. ``inference`` sets batch size, window overlap and the document length limit."""
    return mlflow.pyfunc.log_model(
        name=artifact_path,
        registered_model_name=registered_model_name,
        **_model_kwargs(model_dir, inference),
    )


def save_pyfunc_model(model_dir: Path, path: Path, *, inference: InferenceConfig | None = None) -> Path:
    """The same pyfunc saved to a local directory (no tracking store), e.g. for ``spark_udf``."""
    mlflow.pyfunc.save_model(path=str(path), **_model_kwargs(model_dir, inference))
    return Path(path)
