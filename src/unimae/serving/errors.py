"""OpenAI-style errors: ``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status.

Error bodies are written with every non-ASCII character escaped, so a message that quotes a client's
broken text (a lone surrogate) can always be sent. The API key, body size and Host checks live in
``unimae.serving.middleware``.
"""

from __future__ import annotations

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


INVALID_TEXT = "invalid_text"  # the error type of ``schemas.Text``: a string that is not valid Unicode


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


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: text that is not valid Unicode (a lone surrogate) still renders."""

    def render(self, content) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    return AsciiJSONResponse(error_body(status, message, param, code), status_code=status)


def _common_prefix(locs: list[list]) -> list:
    """The part all error locations share: the field itself, without the union members' tags."""
    out = []
    for parts in zip(*locs, strict=False):
        if any(p != parts[0] for p in parts):
            break
        out.append(parts[0])
    return out


def field_path(loc: list) -> str:
    """An error location as the client wrote the field: ``messages[0].content``, ``stream_options.include_usage``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text


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
        bad_text = next((e for e in errors if e.get("type") == INVALID_TEXT), None)
        if bad_text is not None:  # text the tokenizer cannot take: a value error, like an empty input
            where = ".".join(str(p) for p in bad_text.get("loc", ()) if p not in ("body", "str"))
            return error_response(400, f"'{where}': {bad_text['msg']}", where.split(".")[0], INVALID_TEXT)
        loc = [p for p in first.get("loc", ()) if p != "body"]
        if not loc:  # the body itself (not an object, or missing)
            return error_response(422, f"request body: {first.get('msg', 'invalid')}", None, "invalid_type")
        # a union type gives one error per member: say them once, for the field the client sent wrong
        same = [e for e in errors if [p for p in e.get("loc", ()) if p != "body"][:1] == loc[:1]]
        param = field_path(_common_prefix([[p for p in e["loc"] if p != "body"] for e in same]))
        msgs = list(dict.fromkeys(e["msg"] for e in same))
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
