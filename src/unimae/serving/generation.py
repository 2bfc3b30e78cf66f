"""Text generation for the server: one model, one generation at a time, optionally streamed.

``Generator`` runs ``model.generate`` in its single worker thread (so requests are served in order and
the event loop stays free); streamed text comes back through an asyncio queue. Stop strings end
generation and are cut from the text, also across streamed pieces.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from unimae.encoding.encoder import Encoder


@dataclass
class SamplingParams:
    """How to generate: ``temperature`` 0 (the default) is greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if not 0 <= self.temperature <= 2:
            raise ValueError("temperature must be between 0 and 2")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


def chat_prompt_ids(encoder: Encoder, messages: list[dict]) -> list[int]:
    """Token ids of ``messages`` under the model's chat template, ready for the assistant's turn."""
    if not getattr(encoder.tokenizer, "chat_template", None):
        raise ValueError("this model has no chat template: use /v1/completions")
    out = encoder.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    return list(out["input_ids"])


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


class _QueueStreamer(TextStreamer):
    """Puts each finished piece of text on an asyncio queue (from the generation thread); None at the end."""

    def __init__(self, tokenizer, queue: asyncio.Queue, loop: asyncio.AbstractEventLoop):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.queue, self.loop = queue, loop

    def on_finalized_text(self, text: str, stream_end: bool = False):
        if text:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, text)
        if stream_end:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class Generator:
    """Serialized generation with the encoder's weights (the same weights that embed)."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unimae-generate")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def max_new_tokens_for(self, n_prompt: int, requested: int) -> int:
        """``requested`` clipped to the room left in the context; ValueError when there is none."""
        ctx = self.encoder.context_length
        if ctx is not None and n_prompt >= ctx:
            raise ValueError(f"the prompt has {n_prompt} tokens; the model's context is {ctx} tokens")
        return requested if ctx is None else min(requested, ctx - n_prompt)

    @torch.inference_mode()
    def generate_sync(
        self, ids: list[int], params: SamplingParams, streamer=None, cancel: threading.Event | None = None
    ) -> GenerationResult:
        enc = self.encoder
        if cancel is not None and cancel.is_set():  # the client left while this waited its turn
            if streamer is not None:
                streamer.on_finalized_text("", stream_end=True)
            return GenerationResult("", len(ids), 0, "stop")
        input_ids = torch.tensor([ids], device=enc.device)
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
        out = enc.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=params.max_new_tokens,
            pad_token_id=enc.pad_id,
            streamer=streamer,
            stopping_criteria=criteria,
            **kwargs,
        )
        new = out[0, len(ids) :].tolist()
        text, stopped = cut_at_stop(enc.tokenizer.decode(new, skip_special_tokens=True), params.stop)
        eos = enc.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {enc.tokenizer.eos_token_id}
        ended = stopped or (bool(new) and new[-1] in eos_ids) or len(new) < params.max_new_tokens
        return GenerationResult(text, len(ids), len(new), "stop" if ended else "length")

    async def generate(self, ids: list[int], params: SamplingParams) -> GenerationResult:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, self.generate_sync, ids, params
        )

    async def stream(self, ids: list[int], params: SamplingParams) -> AsyncIterator[str | GenerationResult]:
        """Yield text pieces as they are generated, then the ``GenerationResult``.

        Closing the iterator early (the client went away) stops the generation at the next token.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        streamer = _QueueStreamer(self.encoder.tokenizer, queue, loop)
        job = loop.run_in_executor(self.executor, self.generate_sync, ids, params, streamer, cancel)
        hold = max((len(s) for s in params.stop), default=1) - 1  # a stop string may start in this piece
        text, sent = "", 0
        try:
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, job}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:  # generation ended without an end-of-stream (it failed)
                    get.cancel()
                    await job  # raises its error
                    break
                piece = get.result()
                if piece is None:
                    break
                text += piece
                cut, stopped = cut_at_stop(text, params.stop)
                upto = len(cut) if stopped else max(sent, len(text) - hold)
                if upto > sent:
                    yield text[sent:upto]
                    sent = upto
                if stopped:
                    cancel.set()
                    break
            result = await job
            if len(result.text) > sent:
                yield result.text[sent:]
            yield result
        finally:
            cancel.set()
