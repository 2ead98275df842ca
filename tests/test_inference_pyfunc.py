"""The joint model as an MLflow pyfunc (models-from-code): log, load, predict, and reject bad input; it
runs with the inference section it was saved with, concurrent requests do not see each other, and in the
scoring server a request over the serving limits is refused before any model work."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from pydantic import ValidationError

from conflict_events.config import InferenceConfig
from conflict_events import backends
from conflict_events.inference.predictor import Predictor
from conflict_events.tracking import log_joint_model, save_joint_model_pyfunc
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.records import RECORD_COLUMNS
from conflict_events.schema import Document

TEXT = "Rebels attacked an army post near the border on Monday. The government condemned the attack."


@pytest.fixture(scope="module")
def joint_model_dir(tiny_encoder_dir, tmp_path_factory):
    return save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "model", max_length=32)


@pytest.fixture()
def logged_model(joint_model_dir, mlflow_tracking):
    with mlflow.start_run():
        info = log_joint_model(joint_model_dir, "conflict-events", InferenceConfig())
    return info


def test_logged_pyfunc_predicts_the_predictor_records(logged_model, joint_model_dir):
    assert logged_model.registered_model_version == 1
    model = mlflow.pyfunc.load_model("models:/conflict-events/1")
    frame = model.predict(pd.DataFrame([{"id": "a", "text": TEXT}, {"id": "blank", "text": "  \n "}]))

    assert list(frame.columns) == list(RECORD_COLUMNS)
    predictor = Predictor.from_uri(joint_model_dir, InferenceConfig())
    expected = [record.to_json() for record in predictor.predict_documents([Document("a", TEXT)])]
    assert frame["text"].tolist() == [record["text"] for record in expected]
    assert frame["event_type"].tolist() == [record["event_type"] for record in expected]
    assert frame["actors"].tolist() == [record["actors"] for record in expected]
    for record in frame.to_dict(orient="records"):
        assert TEXT[record["char_start"] : record["char_end"]] == record["text"]
        assert record["model_version"].startswith("sha256:")


def test_documents_layout_gives_one_row_per_input(logged_model):
    model = mlflow.pyfunc.load_model(logged_model.model_uri)
    frame = model.predict(
        pd.DataFrame([{"id": "a", "text": TEXT}, {"id": "b", "text": ""}]),
        params={"layout": "documents", "model_uri": "models:/x@champion", "model_version": "7"},
    )
    assert len(frame) == 2
    first, second = (json.loads(cell) for cell in frame["records"])
    assert [record["sentence_index"] for record in first] == [0, 1]
    assert {record["model_version"] for record in first} == {"7"}
    assert second == []


def test_rows_without_an_id_are_numbered_and_bad_text_is_rejected(logged_model):
    model = mlflow.pyfunc.load_model(logged_model.model_uri)
    frame = model.predict(pd.DataFrame({"text": ["One. Two.", "Three."]}))
    assert frame["doc_id"].tolist() == ["0", "0", "1"]
    with pytest.raises(MlflowException, match="row 1: 'text' must be a string; got null"):
        model.predict(pd.DataFrame({"id": ["a", "b"], "text": ["fine", None]}))


@pytest.mark.parametrize("backend", ["torch", "int8"])
def test_a_saved_pyfunc_runs_the_backend_its_inference_section_names(joint_model_dir, tmp_path, monkeypatch, backend):
    # The default backend (auto) puts the encoder under bf16 autocast on a CPU with native bf16. Pretend this
    # one has it, so that a model loaded with the default backend cannot pass for a `torch` one.
    monkeypatch.setattr(backends, "native_bf16", lambda: True)
    inference = InferenceConfig(backend=backend, batch_size=5, window_overlap=3)
    path = save_joint_model_pyfunc(joint_model_dir, tmp_path / "pyfunc", inference)
    assert Model.load(str(path)).flavors["python_function"]["config"] == inference.model_dump(mode="json")

    predictor = mlflow.pyfunc.load_model(str(path)).unwrap_python_model().predictor
    model = predictor.loaded.model
    quantized = any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.encoder.modules())
    assert (model.encoder_autocast, quantized) == {"torch": (None, False), "int8": (None, True)}[backend]
    assert predictor.settings == inference


def test_a_backend_given_at_load_time_replaces_the_logged_one(joint_model_dir, tmp_path, monkeypatch):
    # What `conflict-events serve --backend` does (tracking.scoring_app): MLflow lays model_config over the
    # logged section, key by key.
    monkeypatch.setattr(backends, "native_bf16", lambda: False)
    path = save_joint_model_pyfunc(joint_model_dir, tmp_path / "pyfunc", InferenceConfig(backend="torch", batch_size=5))
    predictor = mlflow.pyfunc.load_model(str(path), model_config={"backend": "int8"}).unwrap_python_model().predictor
    assert predictor.backend.to_json() == {"requested": "int8", "ran": "int8", "reason": "as requested"}
    assert predictor.settings == InferenceConfig(backend="int8", batch_size=5)
    assert mlflow.pyfunc.load_model(str(path), model_config={"backend": "bf16"}).unwrap_python_model().predictor.backend.name == "torch"


def test_concurrent_requests_each_get_the_model_uri_they_ask_for(joint_model_dir, tmp_path):
    path = save_joint_model_pyfunc(joint_model_dir, tmp_path / "pyfunc", InferenceConfig())
    model = mlflow.pyfunc.load_model(str(path))
    predictor = model.unwrap_python_model().predictor
    own = predictor.identity
    frame = pd.DataFrame([{"id": "a", "text": TEXT}])
    threads = 8
    start = threading.Barrier(threads)

    def requests(number: int) -> set[str]:
        start.wait()
        seen: set[str] = set()
        for _ in range(12):
            seen |= set(model.predict(frame, params={"model_uri": f"models:/m/{number}"})["model_uri"])
        return seen

    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(requests, range(threads)))
    assert answers == [{f"models:/m/{number}"} for number in range(threads)]
    # Nothing of those requests stayed behind on the shared model: a plain request names the model itself.
    assert predictor.identity == own
    plain = model.predict(frame)
    assert set(plain["model_uri"]) == {"pyfunc"} and plain["model_version"][0].startswith("sha256:")


def test_an_id_that_is_neither_a_string_nor_an_integer_is_rejected(logged_model):
    model = mlflow.pyfunc.load_model(logged_model.model_uri)
    # An object id used to come back as its repr ("{'x': 1}") in doc_id.
    with pytest.raises(MlflowException, match=r"row 1: 'id' must be a string; got dict"):
        model.predict(pd.DataFrame({"id": ["a", {"x": 1}], "text": ["One.", "Two."]}))


def test_in_the_scoring_server_requests_over_the_limits_are_refused_before_any_model_work(
    joint_model_dir, tmp_path, monkeypatch
):
    inference = InferenceConfig(max_request_rows=2, max_request_chars=100)
    model = mlflow.pyfunc.load_model(str(save_joint_model_pyfunc(joint_model_dir, tmp_path / "pyfunc", inference)))
    predictor = model.unwrap_python_model().predictor
    monkeypatch.setenv(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name, "true")  # what the scoring server sets at start-up

    at_the_limits = pd.DataFrame({"id": ["a", "b"], "text": ["Talks resumed.".ljust(50), "Fighting stopped.".ljust(50)]})
    assert model.predict(at_the_limits)["doc_id"].tolist() == ["a", "b"]

    def no_model_work(*args, **kwargs):
        raise AssertionError("the model ran on a request over the serving limits")

    monkeypatch.setattr(predictor, "predict_documents", no_model_work)
    monkeypatch.setattr(predictor, "predict_by_document", no_model_work)
    over = {
        "the request has 3 rows, over the limit of 2 rows per request (inference.max_request_rows); "
        "split it into smaller requests": pd.DataFrame({"text": ["One.", "Two.", "Three."]}),
        "the request has 101 characters of text, over the limit of 100 per request (inference.max_request_chars); "
        "split it into smaller requests": pd.DataFrame({"text": ["x" * 50, "y" * 51]}),
    }
    for layout in ("sentences", "documents"):
        for message, frame in over.items():
            with pytest.raises(MlflowException) as refused:
                model.predict(frame, params={"layout": layout})
            assert refused.value.message == message
            assert refused.value.get_http_status_code() == 400


def test_outside_the_scoring_server_batches_are_not_held_to_the_request_limits(joint_model_dir, tmp_path, monkeypatch):
    # spark_udf hands the model batches of up to 10,000 rows (Arrow's maxRecordsPerBatch): not requests.
    monkeypatch.delenv(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name, raising=False)
    inference = InferenceConfig(max_request_rows=2, max_request_chars=100)
    model = mlflow.pyfunc.load_model(str(save_joint_model_pyfunc(joint_model_dir, tmp_path / "pyfunc", inference)))
    frame = pd.DataFrame({"text": ["Talks resumed.".ljust(60), "Fighting stopped.".ljust(60), "Both sides met."]})
    assert model.predict(frame, params={"layout": "documents"})["records"].size == 3


@pytest.mark.parametrize("key", ["max_request_rows", "max_request_chars"])
def test_serving_limits_must_be_positive(key):
    assert getattr(InferenceConfig(), key) >= 1
    with pytest.raises(ValidationError, match=key):
        InferenceConfig(**{key: 0})
