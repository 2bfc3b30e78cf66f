"""OpenAI-style errors: ``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status.

Also the one ASGI middleware of the server (``GuardMiddleware``): the API key and the body size limit are
checked there, before a request body is read or parsed.
"""

from __future__ import annotations

import hmac
import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """An error a client caused or should see, turned into an OpenAI error body with ``status``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the server as an OpenAI error body; none stops it."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return error_response(
                400, f"request body is not valid JSON ({first.get('ctx', {}).get('error', '')})"
            )
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if not loc:  # the body itself (not an object, or missing)
            return error_response(422, f"request body: {first.get('msg', 'invalid')}", None, "invalid_type")
        param = loc[0]
        # a union type gives one error per member: say them once, for the field the client sent wrong
        msgs = list(
            dict.fromkeys(
                e["msg"] for e in errors if [str(p) for p in e.get("loc", ()) if p != "body"][:1] == [param]
            )
        )
        return error_response(422, f"invalid '{param}': {'; or '.join(msgs[:3])}", param, "invalid_type")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception):
        # Starlette re-raises the exception after this response, so the ASGI server logs its traceback
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


class GuardMiddleware:
    """Pure ASGI middleware: optional bearer API key, then a request body limit (413).

    ``open_paths`` (the health check) need no key. A body with a Content-Length over the limit is refused
    before it is read; a chunked body is read up to the limit and refused when it goes over.
    """

    def __init__(
        self, app, api_key: str | None, max_body_bytes: int, open_paths: tuple[str, ...] = ("/health",)
    ):
        self.app, self.api_key, self.max_body_bytes, self.open_paths = (
            app,
            api_key,
            max_body_bytes,
            open_paths,
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.api_key and scope["path"] not in self.open_paths:
            given = headers.get(b"authorization", b"").decode("latin-1")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                why = "missing API key" if not given else "incorrect API key"
                return await _send(
                    send,
                    401,
                    error_body(401, f"{why}: send 'Authorization: Bearer KEY'", code="invalid_api_key"),
                )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await _send(send, 400, error_body(400, "invalid Content-Length header"))
            if n > self.max_body_bytes:
                return await _send(send, 413, _too_large(self.max_body_bytes))
            return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        # No Content-Length (chunked): read it all, within the limit, then replay it to the app.
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return await _send(send, 413, _too_large(self.max_body_bytes))
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)


def _too_large(limit: int) -> dict:
    return error_body(
        413, f"request body is larger than the server's limit of {limit} bytes", code="request_too_large"
    )


async def _send(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
