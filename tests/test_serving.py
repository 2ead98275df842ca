"""`mlflow models serve` on the registered pyfunc: good and bad requests, and the server survives them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from conflict_events.config import InferenceConfig
from conflict_events.inference.predictor import Predictor
from conflict_events.tracking import log_joint_model
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.schema import Document

TEXT = "Libyan war planes attacked militants in Derna. The eastern government confirmed the strikes."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: bytes | str | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_served_model_answers_good_requests_and_rejects_bad_ones(tiny_encoder_dir, tmp_path, mlflow_tracking):
    model_dir = save_random_joint_model(tiny_encoder_dir, tmp_path / "joint", max_length=32)
    with mlflow.start_run():
        info = log_joint_model(model_dir, "conflict-events", InferenceConfig())
    MlflowClient().set_registered_model_alias("conflict-events", "champion", info.registered_model_version)

    port = free_port()
    venv_bin = str(Path(sys.executable).parent)  # `mlflow models serve` execs uvicorn from PATH
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""), "MLFLOW_TRACKING_URI": mlflow_tracking}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(Path(venv_bin) / "mlflow"), "models", "serve", "-m", "models:/conflict-events@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: uvicorn's workers go down with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "server did not answer /ping within 180 s"
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)

        good = {"dataframe_records": [{"id": "derna-1", "text": TEXT}, {"id": "blank", "text": "  "}]}
        status, answer = post(f"{base}/invocations", good)
        assert status == 200, answer
        records = answer["predictions"]
        expected = Predictor.from_uri(model_dir, InferenceConfig()).predict_documents([Document("derna-1", TEXT)])
        assert [(r["doc_id"], r["char_start"], r["char_end"], r["text"]) for r in records] == [
            (r.doc_id, r.char_start, r.char_end, r.text) for r in expected
        ]
        assert [r["event_type"] for r in records] == [r.event_type for r in expected]
        for record in records:
            assert all(TEXT[a["char_start"] : a["char_end"]] == a["text"] for a in record["actors"])

        bad_requests = {
            "no rows": ({"dataframe_records": []}, "Model is missing inputs ['text']"),
            "missing text": ({"dataframe_records": [{"id": "x"}]}, "Model is missing inputs ['text']"),
            "wrong type": ({"dataframe_records": [{"id": "x", "text": 42}]}, "row 0: 'text' must be a string; got int"),
            "null text": ({"dataframe_records": [{"id": "x", "text": None}]}, "row 0: 'text' must be a string; got null"),
            "huge text": (
                {"dataframe_records": [{"id": "x", "text": "word " * 600_000}]},
                "row 0: text has 3000000 characters, over the limit of 2000000 (inference.max_document_chars)",
            ),
            "not json": ("{not json", "Invalid input. Ensure that input is a valid JSON formatted string."),
        }
        for name, (body, message) in bad_requests.items():
            status, answer = post(f"{base}/invocations", body)
            assert status == 400, (name, answer)
            assert message in answer["message"], (name, answer["message"][:500])

        status, answer = post(f"{base}/invocations", {"dataframe_records": [{"text": "Talks resumed. Fighting stopped."}]})
        assert status == 200 and [r["doc_id"] for r in answer["predictions"]] == ["0", "0"]
        assert server.poll() is None
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
