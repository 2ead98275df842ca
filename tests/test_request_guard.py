"""`conflict-events serve`'s guard in front of MLflow's scoring app (inference/serving.py): bodies MLflow's
parser would fail on with a bare 500 get 400/413 with the reason; good requests reach the app unchanged."""

from __future__ import annotations

import asyncio
import json

from conflict_events.inference.serving import RequestGuard, body_problem

DEEP = b'{"dataframe_records": [{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"


def test_what_the_parser_cannot_take_is_named():
    assert body_problem(DEEP, "application/json") == "the JSON body is nested too deeply to parse"
    assert "Exceeds the limit (4300 digits)" in body_problem(b'{"x": ' + b"7" * 5000 + b"}", "application/json")
    assert body_problem(b'{"x": 1}', None).startswith("the request has no Content-Type header")
    assert body_problem(b"{not json", "application/json; charset=utf-8") is None  # MLflow's own 400 answers it
    assert body_problem(b"id,text\n1,a\n", "text/csv") is None
    assert body_problem(b'{"dataframe_records": [{"text": "Talks."}]}', "application/json") is None


def call(guard: RequestGuard, body: bytes, content_type: bytes | None = b"application/json", chunk: int = 1 << 20):
    """Drive the guard with ``body`` in chunks; returns (status, JSON answer or the body the app saw)."""
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    headers = [] if content_type is None else [(b"content-type", content_type)]
    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


async def echo_app(scope, receive, send):
    """Stands in for MLflow's app: answers 200 with the body it received."""
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps({"seen": message["body"].decode()}).encode()})


def test_a_good_request_reaches_the_app_whole_even_in_chunks():
    body = json.dumps({"dataframe_records": [{"id": str(i), "text": "Talks resumed."} for i in range(500)]}).encode()
    assert call(RequestGuard(echo_app, max_body_bytes=1 << 20), body, chunk=1000) == (200, {"seen": body.decode()})


def test_bad_bodies_get_400_and_oversized_ones_413_before_the_app_runs():
    guard = RequestGuard(echo_app, max_body_bytes=1000)
    assert call(RequestGuard(echo_app, max_body_bytes=1 << 22), DEEP) == (
        400, {"error_code": "BAD_REQUEST", "message": "the JSON body is nested too deeply to parse"}
    )
    status, answer = call(guard, b'{"x": 1}', content_type=None)
    assert status == 400 and "no Content-Type" in answer["message"]
    status, answer = call(guard, b"[" * 2000, chunk=100)  # over the cap: refused before it is parsed
    assert (status, answer["error_code"]) == (413, "REQUEST_TOO_LARGE")
