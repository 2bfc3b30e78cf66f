"""Answering from retrieved chunks: a prompt of numbered sources fitted to the model's context, then generate.

Every prompt is fitted to the context (``fit_prompt``: sources dropped from the end, the last one cut by
tokens), and control-token text in a source or the question stays text (``unimae.chat``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from unimae.chat import chat_input_ids, has_chat_template, text_input_ids
from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.rag.chunking import token_spans
from unimae.rag.index import Hit, RagIndex, numbered_hits

INSTRUCTION = (
    "Answer the question using only the numbered sources below. Cite the sources you use as [1], [2]. "
    "If the sources do not contain the answer, say that you do not know."
)
MIN_SOURCE_TOKENS = 16  # a source cut shorter than this is dropped instead


class PromptTooLongError(UserError):
    """The question alone (with the instruction) does not fit the model's context."""


@dataclass
class RagAnswer:
    """``ask``'s answer and the sources it was given; ``str()`` is what ``unimae rag ask`` prints."""

    answer: str
    hits: list[Hit]
    prompt: str
    question: str = ""

    def __str__(self) -> str:
        """The question, the answer, then the sources numbered as the answer cites them."""
        sources = f"\n{numbered_hits(self.hits)}" if self.hits else ""
        return f"question: {self.question}\n\nanswer: {self.answer}\n\nsources:{sources}"


@dataclass
class RagPrompt:
    """A prompt that fits the model's context: its ids, the sources it kept (the last may be cut)."""

    ids: list[int]
    text: str  # the user message
    hits: list[Hit]
    max_new_tokens: int  # the answer length that still fits


def build_prompt(question: str, hits: Sequence[Hit]) -> str:
    """The user message: instruction, numbered sources, question."""
    sources = "\n\n".join(f"[{i}] ({h.chunk.source}) {h.chunk.text}" for i, h in enumerate(hits, start=1))
    return f"{INSTRUCTION}\n\nSources:\n{sources}\n\nQuestion: {question}"


def prompt_ids(tokenizer, text: str) -> list[int]:
    """The ids ``Encoder.generate`` gives ``text``: one user turn (chat template) or plain text; either way
    control-token text in the question or a source stays text."""
    if has_chat_template(tokenizer):
        return chat_input_ids(tokenizer, [{"role": "user", "content": text}])
    return text_input_ids(tokenizer, text)


def fit_prompt(encoder: Encoder, question: str, hits: Sequence[Hit], max_new_tokens: int) -> RagPrompt:
    """The prompt for ``question`` with as many of ``hits`` as fit the context, never more.

    Half the context at most is kept for the answer (``max_new_tokens`` if less); sources that do not fit
    the rest are dropped from the end, the last one kept is cut by tokens. ``PromptTooLongError`` if the
    question alone does not fit.
    """
    hits, ctx = list(hits), encoder.context_length
    text = build_prompt(question, hits)
    ids = prompt_ids(encoder.tokenizer, text)
    if ctx is None:
        return RagPrompt(ids, text, hits, max_new_tokens)
    budget = ctx - min(max_new_tokens, ctx // 2)
    while len(ids) > budget and hits:
        spans = token_spans(encoder.tokenizer, hits[-1].chunk.text)
        keep = len(spans) - (len(ids) - budget) - 2  # two spare: a cut can merge tokens differently
        if keep < MIN_SOURCE_TOKENS or keep >= len(spans):
            hits.pop()
        else:
            hits[-1] = replace(
                hits[-1], chunk=replace(hits[-1].chunk, text=hits[-1].chunk.text[: spans[keep - 1][1]])
            )
        text = build_prompt(question, hits)
        ids = prompt_ids(encoder.tokenizer, text)
    if len(ids) > budget:
        raise PromptTooLongError(
            f"the question makes a prompt of {len(ids)} tokens; the model's context of {ctx} tokens leaves "
            f"{budget} for it (the rest is kept for the answer): ask a shorter question"
        )
    return RagPrompt(ids, text, hits, min(max_new_tokens, ctx - len(ids)))


def ask(encoder: Encoder, index: RagIndex, question: str, k: int = 4, max_new_tokens: int = 200) -> RagAnswer:
    """Retrieve the top-``k`` chunks for ``question`` and answer from them with the same weights.

    The sources are cut to fit the model's context (``fit_prompt``); ``RagAnswer.hits`` are those used.
    """
    if not question.strip():
        raise UserError("the question is empty")
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    prompt = fit_prompt(encoder, question, index.search(encoder, question, k), max_new_tokens)
    answer = encoder.generate(prompt.text, max_new_tokens=prompt.max_new_tokens)
    return RagAnswer(answer, prompt.hits, prompt.text, question)
