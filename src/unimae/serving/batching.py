"""Dynamic batching of embedding requests: many concurrent requests, one forward pass.

Requests (texts already tokenized by the route: each is tokenized once) wait in an asyncio queue. The worker takes the first, then keeps collecting for up to
``timeout_ms`` (or until ``max_batch_size`` texts), and embeds the lot with one call of ``embed`` in its
own thread, so the event loop keeps accepting requests meanwhile. While a batch runs, the next requests
queue up and form the next batch at once. ``max_batch_size=1`` embeds one request at a time. Requests
share a batch only when they ask for the same ``dims`` (the embedding width, ``None``: full). A batch is
embedded in calls of at most ``slice_texts`` texts (or ``max_batch_size``, if more); a request whose caller
stopped waiting (its client left) is dropped before its batch and between calls, so one large request
whose client has gone stops within one call instead of holding the requests behind it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class EmbeddingBatcher:
    """Collect ``embed`` calls from concurrent requests into batches.

    Args:
        embed: ``(items, dims) -> (n, dims or d)`` array; called from one worker thread, one batch at a time.
            An item is whatever the route queued per text (``Encoder.tokenize``'s laid-out ids, or a text).
        max_batch_size: texts per batch. A single request with more texts is embedded as its own batch.
        timeout_ms: how long the first request of a batch waits for others.
        slice_texts: most texts per ``embed`` call (``max_batch_size`` if larger); requests whose callers
            left are dropped between calls.
    """

    def __init__(
        self,
        embed: Callable[[list, int | None], np.ndarray],
        max_batch_size: int = 32,
        timeout_ms: float = 5.0,
        slice_texts: int = 64,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if timeout_ms < 0:
            raise ValueError(f"timeout_ms must be >= 0, got {timeout_ms}")
        self.embed_fn, self.max_batch_size, self.timeout = embed, max_batch_size, timeout_ms / 1000
        self.slice = max(max_batch_size, slice_texts)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unimae-embed")
        self.batches = 0  # forward calls made, for tests and /health
        self.texts = 0
        self._queue: asyncio.Queue | None = None
        self._held: deque = deque()  # an item that did not fit the last batch goes first next time
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="unimae-embedding-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            *_, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(RuntimeError("server is shutting down"))
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def embed(self, texts: Sequence, dims: int | None = None) -> np.ndarray:
        """Embed ``texts`` (items: see ``embed``; ``(n, dims or d)``), batched with other waiting requests."""
        if self._queue is None:
            raise RuntimeError("EmbeddingBatcher.start() was not called")
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((list(texts), dims, fut))
        return await fut  # cancelling this (the client left) cancels fut: the worker drops it

    async def _next_item(self, deadline: float | None):
        if self._held:
            return self._held.popleft()
        if deadline is None:
            return await self._queue.get()
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), remaining)
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> list:
        batch = [await self._next_item(None)]
        n = len(batch[0][0])
        deadline = asyncio.get_running_loop().time() + self.timeout
        while n < self.max_batch_size:
            item = await self._next_item(deadline)
            if item is None:
                break
            if n + len(item[0]) > self.max_batch_size or item[1] != batch[0][1]:
                self._held.append(item)
                break
            batch.append(item)
            n += len(item[0])
        return batch

    async def _run(self) -> None:
        while True:
            collected = await self._collect()  # all with the same dims
            batch = [(texts, fut) for texts, _, fut in collected if not fut.done()]  # drop cancelled
            if batch:
                await self._embed_batch(batch, collected[0][1])

    async def _embed_batch(self, batch: list, dims: int | None) -> None:
        """Embed ``batch`` (``(items, future)`` pairs) in slices of at most ``self.slice`` items, taking each
        slice only from requests still waited for; each future gets its ``(n, dims or d)`` rows."""
        loop = asyncio.get_running_loop()
        pending = [(k, item) for k, (items, _) in enumerate(batch) for item in items]
        rows: list[list[np.ndarray]] = [[] for _ in batch]
        while pending:
            pending = [(k, item) for k, item in pending if not batch[k][1].done()]  # clients gone: shed
            piece, pending = pending[: self.slice], pending[self.slice :]
            if not piece:
                return
            try:
                vecs = await loop.run_in_executor(self.executor, self.embed_fn, [i for _, i in piece], dims)
            except Exception as e:  # the requests fail, the server goes on
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                return
            self.batches += 1
            self.texts += len(piece)
            for (k, _), vec in zip(piece, vecs, strict=True):
                rows[k].append(vec)
            for k in dict.fromkeys(k for k, _ in piece):
                items, fut = batch[k]
                if len(rows[k]) == len(items) and not fut.done():
                    fut.set_result(np.stack(rows[k]))
