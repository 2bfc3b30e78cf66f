"""Text generation for the server: one model, one generation at a time, optionally streamed.

``Generator`` runs ``model.generate`` in its single worker thread (so requests are served in order and
the event loop stays free); streamed text comes back through ``transformers``' ``AsyncTextIteratorStreamer``.
Stop strings end generation and are cut from the text, also across streamed pieces. Every generation
takes a ``cancel`` event (set when its client goes away: a waiting job is skipped, a running one stops at
the next token) and stops after ``max_seconds``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from transformers import AsyncTextIteratorStreamer, StoppingCriteria, StoppingCriteriaList

from unimae.encoding.encoder import Encoder


@dataclass
class SamplingParams:
    """How to generate: ``temperature`` 0 (the default) is greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    max_seconds: float | None = None
    """This generation's own time limit, under the generator's (a request's share of its time)."""

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError("max_seconds must be > 0")
        if not 0 <= self.temperature <= 2:
            raise ValueError("temperature must be between 0 and 2")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: (
        str  # "stop" (EOS or a stop string) or "length" (max_tokens, the context or the time limit)
    )
    seconds: float = 0.0  # time spent generating (not waiting for the generator)


def completion_prompt_ids(encoder: Encoder, prompt: str) -> list[int]:
    """Token ids of a plain prompt, with the special tokens the tokenizer adds (a BOS for Llama-2/3)."""
    return list(encoder.tokenizer(prompt).input_ids)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class _StopOnText(StoppingCriteria):
    """Stops when the generated text contains a stop string (decodes only the last few tokens).

    transformers' own ``stop_strings`` needs a BPE/SentencePiece-style vocabulary; this works with any.
    """

    def __init__(self, tokenizer, stop: list[str], prompt_len: int):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, stop, prompt_len
        self.window = max(len(s) for s in stop) + 8  # tokens: every token decodes to >= 0 characters

    def __call__(self, input_ids, scores, **kwargs):
        tail = input_ids[0, self.prompt_len :][-self.window :]
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        done = any(s in text for s in self.stop)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class Generator:
    """Serialized generation with the encoder's weights (the same weights that embed).

    Args:
        encoder: the model and tokenizer.
        max_seconds: wall-clock limit of one generation (``transformers``' ``max_time``); None: no limit.
    """

    def __init__(self, encoder: Encoder, max_seconds: float | None = None):
        self.encoder, self.max_seconds = encoder, max_seconds
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unimae-generate")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def max_new_tokens_for(self, n_prompt: int, requested: int) -> int:
        """``requested`` clipped to the room left in the context; ValueError when there is none."""
        ctx = self.encoder.context_length
        if ctx is not None and n_prompt >= ctx:
            raise ValueError(f"the prompt has {n_prompt} tokens; the model's context is {ctx} tokens")
        return requested if ctx is None else min(requested, ctx - n_prompt)

    def _generate_kwargs(
        self, ids: list[int], params: SamplingParams, cancel: threading.Event | None
    ) -> dict:
        enc = self.encoder
        kwargs = {}
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        criteria = StoppingCriteriaList([_Cancelled(cancel)] if cancel is not None else [])
        if params.stop:
            criteria.append(_StopOnText(enc.tokenizer, params.stop, len(ids)))
        limits = [t for t in (self.max_seconds, params.max_seconds) if t is not None]
        return dict(
            max_new_tokens=params.max_new_tokens,
            max_time=min(limits) if limits else None,
            pad_token_id=enc.pad_id,
            stopping_criteria=criteria,
            **kwargs,
        )

    @torch.inference_mode()
    def generate_sync(
        self, ids: list[int], params: SamplingParams, streamer=None, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """Generate from prompt ``ids`` in this thread; ``streamer`` gets the text, and always its end."""
        enc = self.encoder
        try:
            if cancel is not None and cancel.is_set():  # the client left while this waited its turn
                if streamer is not None:
                    streamer.end()
                return GenerationResult("", len(ids), 0, "stop")
            input_ids = torch.tensor([ids], device=enc.device)  # (1, n_prompt)
            start = time.monotonic()
            out = enc.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                streamer=streamer,
                **self._generate_kwargs(ids, params, cancel),
            )
        except BaseException:
            if streamer is not None:  # generate() ends the stream itself only when it returns
                streamer.end()
            raise
        new = out[0, len(ids) :].tolist()
        text, stopped = cut_at_stop(enc.tokenizer.decode(new, skip_special_tokens=True), params.stop)
        eos = enc.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {enc.tokenizer.eos_token_id}
        ended = stopped or (bool(new) and new[-1] in eos_ids)
        seconds = time.monotonic() - start
        return GenerationResult(text, len(ids), len(new), "stop" if ended else "length", seconds)

    async def generate(
        self, ids: list[int], params: SamplingParams, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """The whole generation; setting ``cancel`` (from any thread) stops it at the next token."""
        cancel = cancel if cancel is not None else threading.Event()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, self.generate_sync, ids, params, None, cancel
            )
        finally:  # also when the awaiting request is cancelled: the worker thread stops too
            cancel.set()

    async def stream(
        self, ids: list[int], params: SamplingParams, cancel: threading.Event | None = None
    ) -> AsyncIterator[str | GenerationResult]:
        """Yield text pieces as they are generated, then the ``GenerationResult``.

        Setting ``cancel``, or closing the iterator early (the client went away), stops the generation at
        the next token.
        """
        loop = asyncio.get_running_loop()
        cancel = cancel if cancel is not None else threading.Event()
        streamer = AsyncTextIteratorStreamer(
            self.encoder.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        job = loop.run_in_executor(self.executor, self.generate_sync, ids, params, streamer, cancel)
        hold = max((len(s) for s in params.stop), default=1) - 1  # a stop string may start in this piece
        text, sent = "", 0
        try:
            async for piece in streamer:  # ends when generation ends, also when it fails
                text += piece
                cut, stopped = cut_at_stop(text, params.stop)
                upto = len(cut) if stopped else max(sent, len(text) - hold)
                if upto > sent:
                    yield text[sent:upto]
                    sent = upto
                if stopped:
                    cancel.set()
                    break
            result = await job  # raises the generation's error
            if len(result.text) > sent:
                yield result.text[sent:]
            yield result
        finally:
            cancel.set()
