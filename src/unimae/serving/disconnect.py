"""Stop work for clients that went away.

An ASGI server does not cancel a handler when its client disconnects: a non-streaming completion would
go on generating (and every request queued behind it would wait). ``ClientWatch`` polls the connection
while a request is being worked on and, when the client has gone, sets ``cancel`` (a ``threading.Event``
the generation thread checks after every token) and cancels what ``run`` awaits (an embedding request
still waiting for its batch is then dropped).

    async with ClientWatch(request) as watch:
        result = await watch.run(generator.generate(ids, params, watch.cancel))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class ClientWatch:
    """Watches one request's connection from ``__aenter__`` to ``__aexit__``.

    Args:
        request: the request whose body has been read (its next ASGI message is the disconnect).
        poll_s: how often to look; a disconnect stops the work within this time (plus one token).
        on_gone: called once when the client is found gone (a counter for ``/health``).
    """

    def __init__(self, request: Request, poll_s: float = 0.1, on_gone: Callable[[], None] | None = None):
        self.request, self.poll_s, self.on_gone = request, poll_s, on_gone
        self.cancel = threading.Event()
        self.gone = False
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> ClientWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self._task.cancel()
        self.cancel.set()  # whatever still runs for this request stops: nobody reads its result
        # Starlette cancels a streaming response whose client left (or its send fails) before we see it
        if exc_type is not None and issubclass(exc_type, (asyncio.CancelledError, GeneratorExit, OSError)):
            self._gone()

    async def _watch(self) -> None:
        while not await self.request.is_disconnected():
            await asyncio.sleep(self.poll_s)
        self.cancel.set()
        self._gone()

    def _gone(self) -> None:
        if not self.gone and self.on_gone is not None:
            self.on_gone()
        self.gone = True

    async def run(self, work: Awaitable[T]) -> T:
        """The result of ``work``, unless the client leaves first: then ``work`` is cancelled, ClientGone."""
        job = asyncio.ensure_future(work)
        await asyncio.wait({job, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if job.done():
            return job.result()
        job.cancel()
        raise ClientGone("the client disconnected")
