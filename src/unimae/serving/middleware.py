"""The server's one ASGI middleware: Host header, API key and body size are checked before a body is read.

``GuardMiddleware`` answers with an OpenAI error body:
- 400 ``invalid_host`` when ``allowed_hosts`` is set and the ``Host`` header names another host. A web page
  that re-points its own domain name at 127.0.0.1 (DNS rebinding) sends its own name as Host, so a
  loopback server that only answers to ``localhost``/``127.0.0.1``/``[::1]`` cannot be read that way.
- 401 for a missing or wrong bearer key (``/health`` needs none).
- 413 for a body over ``max_body_bytes``: refused early by its Content-Length, and in every case counted as
  it is read (a request can send ``Content-Length: 13`` with ``Transfer-Encoding: chunked`` and a body of
  any size; the server reads the chunked body), so no body over the limit reaches the app or memory.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable

from unimae.serving.errors import error_body

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def is_loopback(bind_host: str) -> bool:
    """Whether a server bound to ``bind_host`` can only be reached from this machine."""
    if bind_host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a ``Host`` header without its port, lower case: ``[::1]:8000`` -> ``[::1]``."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 literal keeps its brackets
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class GuardMiddleware:
    """Pure ASGI middleware: Host check, optional bearer API key, then a request body limit.

    Args:
        allowed_hosts: host names (any port) the ``Host`` header may name; ``None`` or a ``"*"`` entry
            allows any.
        api_key: if set, every path but ``open_paths`` needs ``Authorization: Bearer <api_key>``.
        max_body_bytes: larger bodies get 413 before (Content-Length) or while (chunked) they are read.
    """

    def __init__(
        self,
        app,
        api_key: str | None,
        max_body_bytes: int,
        allowed_hosts: Iterable[str] | None = None,
        open_paths: tuple[str, ...] = ("/health",),
    ):
        self.app, self.api_key, self.max_body_bytes, self.open_paths = (
            app,
            api_key,
            max_body_bytes,
            open_paths,
        )
        hosts = None if allowed_hosts is None else {host_name(h) for h in allowed_hosts}
        self.allowed_hosts = None if hosts is None or "*" in hosts else hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await _send(send, refusal[0], refusal[1])
        # Read the body, counting the bytes that actually arrive (not what a header claims), within the
        # limit; then replay it to the app. A body-less request is one empty message.
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

    def _refusal(self, scope, headers: dict) -> tuple[int, dict] | None:
        """(status, body) when the headers alone refuse the request, else None."""
        if self.allowed_hosts is not None:
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed_hosts:
                allowed = ", ".join(sorted(self.allowed_hosts))
                message = f"Host header {host!r} is not allowed (this server answers to: {allowed})"
                return 400, error_body(400, message, code="invalid_host")
        if self.api_key and scope["path"] not in self.open_paths:
            given = headers.get(b"authorization", b"").decode("latin-1")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                why = "missing API key" if not given else "incorrect API key"
                return 401, error_body(
                    401, f"{why}: send 'Authorization: Bearer KEY'", code="invalid_api_key"
                )
        length = headers.get(b"content-length")
        if length is None:
            return None
        try:
            n = int(length)
        except ValueError:
            return 400, error_body(400, "invalid Content-Length header")
        return (413, _too_large(self.max_body_bytes)) if n > self.max_body_bytes else None


def _too_large(limit: int) -> dict:
    return error_body(
        413, f"request body is larger than the server's limit of {limit} bytes", code="request_too_large"
    )


async def _send(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()  # ASCII-escaped: any header text quoted in it can be sent
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
