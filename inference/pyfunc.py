"""The joint model as an MLflow pyfunc, logged with *models-from-code*.

``pyfunc_model.py`` (next to this file) is the model's code: MLflow copies it into the model and runs it
to get the :class:`ConflictEventsPyfunc` instance; the joint-model directory travels as the artifact
``joint_model``. Logging and saving it (signature, requirements, ``model_config``) is MLflow I/O and lives
in :mod:`conflict_events.tracking` (``log_joint_model``, ``save_joint_model_pyfunc``); this module only
defines what the loaded model does. The pyfunc wraps the same :class:`~conflict_events.inference.predictor.Predictor` as the
batch job, so serving, ``spark_udf`` and ``conflict-events predict`` return the same records.

Input: a DataFrame with ``text`` (string, required) and ``id`` (string, optional; the row position when
absent). Output (``layout="sentences"``, the default): one row per sentence with the record columns.
``layout="documents"`` returns one row per input document with a single column ``records`` holding the
JSON list of its sentence records: ``spark_udf`` needs exactly one output row per input row.

In MLflow's scoring server (``mlflow models serve``) a request is refused with HTTP 400 before any model work
when it has more than ``inference.max_request_rows`` rows or ``inference.max_request_chars`` characters of
text, so that a request it takes finishes well inside the server's 60 s timeout. ``spark_udf`` and in-process
``predict`` calls have no request and no timeout: they hand over batches (a ``spark_udf`` batch is up to
Arrow's ``maxRecordsPerBatch``, 10,000 rows), and only ``inference.max_document_chars`` applies to them.
"""

from __future__ import annotations

import json
import numbers
from typing import Any

import mlflow
import pandas as pd
from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from conflict_events.config import InferenceConfig
from conflict_events.inference.allocator import limit_onednn_primitive_cache
from conflict_events.inference.predictor import ModelIdentity, Predictor, model_fingerprint
from conflict_events.model_files import PYFUNC_ARTIFACT
from conflict_events.records import RECORD_COLUMNS, SERVING_LAYOUTS
from conflict_events.schema import Document


class ConflictEventsPyfunc(mlflow.pyfunc.PythonModel):
    """``load_context`` loads the joint model from the ``joint_model`` artifact and builds the Predictor
    with the ``inference`` section the model was logged with (its ``model_config``)."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None

    def load_context(self, context) -> None:
        limit_onednn_primitive_cache()  # a serving or Spark worker process: before its first batch
        settings = InferenceConfig(**(context.model_config or {}))
        model_dir = context.artifacts[PYFUNC_ARTIFACT]
        # The artifact's temp path means nothing to a client; name the model by what identifies it.
        identity = ModelIdentity("pyfunc", model_fingerprint(model_dir))
        self.predictor = Predictor.from_uri(model_dir, settings, identity)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        predictor = self.predictor
        if predictor is None:
            raise MlflowException("the model was not loaded (load_context did not run)")
        params = params or {}
        layout = params.get("layout") or "sentences"
        if layout not in SERVING_LAYOUTS:
            raise _bad_request(f"params.layout must be one of {', '.join(SERVING_LAYOUTS)}; got {layout!r}")
        documents = self._documents(model_input, predictor.settings, serving=_in_scoring_server())
        # Concurrent requests share the predictor: the identity they ask for goes with this call only.
        own = predictor.identity
        identity = ModelIdentity(params.get("model_uri") or own.uri, params.get("model_version") or own.version)
        if layout == "documents":
            grouped = predictor.predict_by_document(documents, identity)
            return pd.DataFrame({"records": [json.dumps([r.to_json() for r in records]) for records in grouped]})
        records = predictor.predict_documents(documents, identity)
        return pd.DataFrame([r.to_json() for r in records], columns=list(RECORD_COLUMNS))

    def _documents(self, model_input: Any, settings: InferenceConfig, serving: bool) -> list[Document]:
        if isinstance(model_input, dict):
            model_input = pd.DataFrame([model_input])
        elif isinstance(model_input, list):
            model_input = pd.DataFrame(model_input)
        if not isinstance(model_input, pd.DataFrame):
            raise _bad_request(f"expected a table with a 'text' column; got {type(model_input).__name__}")
        if "text" not in model_input.columns:
            raise _bad_request(f"the input has no 'text' column (columns: {', '.join(map(str, model_input.columns))})")
        if serving and len(model_input) > settings.max_request_rows:
            raise _bad_request(
                f"the request has {len(model_input)} rows, over the limit of {settings.max_request_rows} rows per "
                "request (inference.max_request_rows); split it into smaller requests"
            )
        ids = model_input["id"] if "id" in model_input.columns else pd.Series([None] * len(model_input))
        documents = []
        for row, (doc_id, text) in enumerate(zip(ids, model_input["text"])):
            if not isinstance(text, str):
                raise _bad_request(f"row {row}: 'text' must be a string; got {_type_name(text)}")
            if len(text) > settings.max_document_chars:
                raise _bad_request(
                    f"row {row}: text has {len(text)} characters, over the limit of {settings.max_document_chars} "
                    "(inference.max_document_chars)"
                )
            if not _usable_id(doc_id):
                raise _bad_request(f"row {row}: 'id' must be a string; got {_type_name(doc_id)}")
            documents.append(Document(str(row) if _missing(doc_id) else str(doc_id), text))
        chars = sum(len(document.text) for document in documents)
        if serving and chars > settings.max_request_chars:
            raise _bad_request(
                f"the request has {chars} characters of text, over the limit of {settings.max_request_chars} per "
                "request (inference.max_request_chars); split it into smaller requests"
            )
        return documents


def _in_scoring_server() -> bool:
    # MLflow's scoring server sets this flag in its process at start-up (`mlflow models predict` simulates it);
    # spark_udf and in-process predict calls do not. It is MLflow's internal flag: the pinned mlflow of the
    # model's requirements has it, and tests/test_serving.py checks the limits against a real server.
    return bool(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.get())


def _usable_id(value: Any) -> bool:
    # An object or a list as id would come back as its repr in doc_id, a record nobody can match to its
    # input. Integers are taken as they are written.
    if _missing(value) or isinstance(value, str):
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _type_name(value: Any) -> str:
    return "null" if _missing(value) else type(value).__name__


def _bad_request(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE is answered with HTTP 400 by the scoring server. No MLflow error code maps to
    # 413 (mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS); the size-like ones, REQUEST_LIMIT_EXCEEDED and
    # RESOURCE_EXHAUSTED, give 429, which tells a client to send the same request again later.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)
