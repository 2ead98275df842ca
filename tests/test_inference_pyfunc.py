"""The joint model as an MLflow pyfunc (models-from-code): log, load, predict, and reject bad input."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from conflict_events.inference.predictor import RECORD_COLUMNS, Predictor
from conflict_events.inference.pyfunc import log_pyfunc_model
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.schema import Document

TEXT = "Rebels attacked an army post near the border on Monday. The government condemned the attack."


@pytest.fixture(scope="module")
def joint_model_dir(tiny_encoder_dir, tmp_path_factory):
    return save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "model", max_length=32)


@pytest.fixture()
def logged_model(joint_model_dir, mlflow_tracking):
    with mlflow.start_run():
        info = log_pyfunc_model(joint_model_dir, registered_model_name="conflict-events")
    return info


def test_logged_pyfunc_predicts_the_predictor_records(logged_model, joint_model_dir):
    assert logged_model.registered_model_version == 1
    model = mlflow.pyfunc.load_model("models:/conflict-events/1")
    frame = model.predict(pd.DataFrame([{"id": "a", "text": TEXT}, {"id": "blank", "text": "  \n "}]))

    assert list(frame.columns) == list(RECORD_COLUMNS)
    expected = Predictor.from_uri(joint_model_dir).predict_documents([Document("a", TEXT)])
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
