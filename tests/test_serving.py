"""`mlflow models serve` on the registered pyfunc: good and bad requests, the serving limits, malformed JSON and
concurrent clients, and the server survives them all. One server (loopback, ephemeral port) for the module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from conflict_events.config import InferenceConfig
from conflict_events.inference.predictor import Predictor, model_fingerprint
from conflict_events.inference.testing import free_port, save_random_joint_model, serve_command, stop_server, wait_until_up
from conflict_events.schema import Document
from conflict_events.tracking import log_joint_model

TEXT = "Libyan war planes attacked militants in Derna. The eastern government confirmed the strikes."


@dataclass(frozen=True)
class Served:
    url: str  # .../invocations
    model_dir: Path
    log: Path
    process: subprocess.Popen
    # "mlflow": `mlflow models serve`; "guarded": `conflict-events serve`, the same app behind RequestGuard.
    server: str

    def wait_for_log(self, text: str, seconds: float = 10) -> bool:
        deadline = time.monotonic() + seconds
        while text not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


def post_raw(url: str, data: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post(url: str, body: str | dict) -> tuple[int, dict]:
    status, text = post_raw(url, (body if isinstance(body, str) else json.dumps(body)).encode())
    return status, json.loads(text)


@pytest.fixture(scope="module", params=["guarded", "mlflow"])
def served(request, tiny_encoder_dir, tmp_path_factory):
    """The tiny model registered as ``conflict-events@champion`` in a store of its own, served by
    ``mlflow models serve`` and by ``conflict-events serve`` with the default inference section (so the
    default serving limits): every test runs against both."""
    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        patch.chdir(root)  # the store's default artifact root is ./mlartifacts
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            model_dir = save_random_joint_model(tiny_encoder_dir, root / "joint", max_length=32)
            with mlflow.start_run():
                info = log_joint_model(model_dir, "conflict-events", InferenceConfig())
            MlflowClient().set_registered_model_alias("conflict-events", "champion", info.registered_model_version)
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])

    port = free_port()
    venv_bin = str(Path(sys.executable).parent)  # `mlflow models serve` execs uvicorn from PATH
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""), "MLFLOW_TRACKING_URI": uri}
    log_path = root / "serve.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        serve_command(Path(venv_bin), "models:/conflict-events@champion", port, request.param),
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: uvicorn's workers go down with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, port, 180, log_path)
        yield Served(f"{base}/invocations", model_dir, log_path, server, request.param)
    finally:
        stop_server(server)
        log.close()


@pytest.mark.slow
def test_served_model_answers_good_requests_and_rejects_bad_ones(served):
    good = {"dataframe_records": [{"id": "derna-1", "text": TEXT}, {"id": "blank", "text": "  "}]}
    status, answer = post(served.url, good)
    assert status == 200, answer
    records = answer["predictions"]
    expected = Predictor.from_uri(served.model_dir, InferenceConfig()).predict_documents([Document("derna-1", TEXT)])
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
        "object id": ({"dataframe_records": [{"id": {"x": 1}, "text": "Talks."}]}, "row 0: 'id' must be a string; got dict"),
        "huge text": (
            {"dataframe_records": [{"id": "x", "text": "word " * 600_000}]},
            "row 0: text has 3000000 characters, over the limit of 2000000 (inference.max_document_chars)",
        ),
        "not json": ("{not json", "Invalid input. Ensure that input is a valid JSON formatted string."),
    }
    for name, (body, message) in bad_requests.items():
        status, answer = post(served.url, body)
        assert status == 400, (name, answer)
        assert message in answer["message"], (name, answer["message"][:500])

    # Integer ids are taken as written; mixed with missing ones, pandas makes them floats (5.0), refused.
    status, answer = post(served.url, {"dataframe_records": [{"id": 5, "text": "Talks."}, {"id": 6, "text": "Talks."}]})
    assert status == 200 and [r["doc_id"] for r in answer["predictions"]] == ["5", "6"]
    status, answer = post(served.url, {"dataframe_records": [{"text": "Talks."}, {"id": 5, "text": "Talks."}]})
    assert status == 400 and "row 1: 'id' must be a string; got float" in answer["message"]
    status, answer = post(served.url, {"dataframe_records": [{"text": "Talks resumed. Fighting stopped."}]})
    assert status == 200 and [r["doc_id"] for r in answer["predictions"]] == ["0", "0"]
    assert served.process.poll() is None


@pytest.mark.slow
def test_requests_over_the_serving_limits_get_400_naming_the_limit(served):
    limits = InferenceConfig()
    width = limits.max_request_chars // limits.max_request_rows  # at both limits at once
    at_the_limits = [{"id": f"r{i}", "text": f"Talks resumed on day {i}.".ljust(width)} for i in range(limits.max_request_rows)]
    status, answer = post(served.url, {"dataframe_records": at_the_limits})
    assert status == 200, answer
    assert [r["doc_id"] for r in answer["predictions"]] == [row["id"] for row in at_the_limits]

    # The probe: 10,000 rows in one request ran into the server's 60 s timeout (504).
    too_many = [{"id": f"r{i}", "text": "Talks resumed."} for i in range(10_000)]
    one_char_more = at_the_limits[:-1] + [{"id": "last", "text": at_the_limits[-1]["text"] + "!"}]
    over = {
        f"the request has 10000 rows, over the limit of {limits.max_request_rows} rows per request "
        "(inference.max_request_rows); split it into smaller requests": too_many,
        f"the request has {limits.max_request_chars + 1} characters of text, over the limit of "
        f"{limits.max_request_chars} per request (inference.max_request_chars); split it into smaller requests": one_char_more,
    }
    for message, rows in over.items():
        started = time.monotonic()
        status, answer = post(served.url, {"dataframe_records": rows})
        assert status == 400, str(answer)[:300]
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
        assert message in answer["message"], answer["message"][-500:]
        assert time.monotonic() - started < 30  # refused up front, far inside the 60 s timeout
    assert served.process.poll() is None


@pytest.mark.slow
def test_json_the_scoring_server_cannot_parse_gets_500_from_mlflow_400_from_ours_and_both_keep_serving(served):
    # MLflow's scoring server json.loads() the body before any of our code runs and catches only
    # JSONDecodeError/UnicodeDecodeError; what else the parser raises becomes Starlette's bare 500
    # (docs/INFERENCE.md, Serving). Should MLflow start answering these with 400, this test fails: update the docs.
    depth = 100_000
    unparsable = {
        "RecursionError: maximum recursion depth exceeded while decoding a JSON array": (
            '{"dataframe_records": [{"id": "deep", "text": ' + "[" * depth + "]" * depth + "}]}"
        ),
        "ValueError: Exceeds the limit (4300 digits) for integer string conversion": (
            '{"dataframe_records": [{"id": "digits", "text": ' + "7" * 5_000 + "}]}"
        ),
    }
    for error, body in unparsable.items():
        if served.server == "mlflow":
            assert post_raw(served.url, body.encode()) == (500, "Internal Server Error")
            assert served.wait_for_log(error), error
        else:  # conflict-events serve reads the body first and names what is wrong with it
            status, answer = post(served.url, body)
            assert status == 400 and answer["error_code"] == "BAD_REQUEST", answer
            reason = "nested too deeply" if "Recursion" in error else "Exceeds the limit (4300 digits)"
            assert reason in answer["message"]
        assert served.process.poll() is None
    if served.server == "guarded":
        no_type = urllib.request.Request(served.url, data=b'{"dataframe_records": []}', headers={"Content-Type": ""})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(no_type, timeout=30)
        assert refused.value.code == 400 and b"no Content-Type header" in refused.value.read()

    # Nesting the parser can take reaches the model, and is refused like any other text that is not a string.
    nested = '{"dataframe_records": [{"id": "nested", "text": ' + "[" * 500 + "1" + "]" * 500 + "}]}"
    status, answer = post(served.url, nested)
    assert status == 400 and "row 0: 'text' must be a string; got list" in answer["message"], answer["message"][-300:]

    status, answer = post(served.url, {"dataframe_records": [{"id": "after", "text": TEXT}]})
    assert status == 200 and {r["doc_id"] for r in answer["predictions"]} == {"after"}


@pytest.mark.slow
def test_concurrent_clients_each_get_their_own_records_and_nothing_stays_behind(served):
    clients, rounds = 8, 6
    start = threading.Barrier(clients)

    def client(number: int) -> list[tuple[int, dict]]:
        rows = [{"id": f"c{number}-{i}", "text": f"Client {number} reported clashes in district {i}. Talks resumed."}
                for i in range(3)]
        body = {"dataframe_records": rows, "params": {"model_uri": f"models:/client-{number}/1", "model_version": str(number)}}
        start.wait()
        return [post(served.url, body) for _ in range(rounds)]

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(client, range(clients)))
    for number, client_answers in enumerate(answers):
        for status, answer in client_answers:
            assert status == 200, answer
            records = answer["predictions"]
            assert {r["doc_id"] for r in records} == {f"c{number}-{i}" for i in range(3)}
            assert [(r["model_uri"], r["model_version"]) for r in records] == [(f"models:/client-{number}/1", str(number))] * 6

    # Nothing of those requests stayed on the served model: a plain request names the model itself.
    status, answer = post(served.url, {"dataframe_records": [{"id": "plain", "text": TEXT}]})
    assert status == 200
    assert {(r["model_uri"], r["model_version"]) for r in answer["predictions"]} == {("pyfunc", model_fingerprint(served.model_dir))}
