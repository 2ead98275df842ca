"""``conflict-events serve``: MLflow's own scoring server for the pyfunc, behind a guard for what its
request parsing cannot take.

MLflow's scoring server ``json.loads`` the body before any model code runs and catches only
``JSONDecodeError``/``UnicodeDecodeError``: JSON nested deeper than the parser's recursion limit, an integer
literal over Python's 4,300 digits, or a request without ``Content-Type`` end as a bare HTTP 500
(docs/INFERENCE.md, Serving). :class:`RequestGuard` is an ASGI middleware in front of the same app: it reads
the body of ``POST /invocations``, answers 413 when the body is over the size cap and 400 when the
content type is missing or the JSON cannot be parsed (naming why), and otherwise hands the unchanged body on.
Everything else (routes, the pyfunc, its serving limits, timeouts) is MLflow's app as ``mlflow models serve``
runs it.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPE = "application/json"


def body_problem(body: bytes, content_type: str | None) -> str | None:
    """Why MLflow's scoring server could not read ``body`` (None: it can)."""
    if not content_type:
        return f"the request has no Content-Type header; send {JSON_TYPE} (or text/csv)"
    if content_type.split(";")[0].strip().lower() != JSON_TYPE:
        return None  # CSV and the rest: MLflow answers them itself
    try:
        json.loads(body)
    except RecursionError:
        return "the JSON body is nested too deeply to parse"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # MLflow answers these with its own 400
    except ValueError as error:  # e.g. an integer literal over Python's 4,300-digit limit
        return f"the body is not valid JSON: {error}"
    return None


class RequestGuard:
    """ASGI middleware: a request MLflow would answer with 500 gets a 400/413 with the reason instead."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _answer(send, 413, f"the request body is over {self.max_body_bytes} bytes; split it into smaller requests")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        problem = body_problem(body, headers.get("content-type"))
        if problem is not None:
            await _answer(send, 400, problem)
            return
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: disconnects
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _answer(send: Send, status: int, message: str) -> None:
    error_code = "BAD_REQUEST" if status == 400 else "REQUEST_TOO_LARGE"
    payload = json.dumps({"error_code": error_code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
