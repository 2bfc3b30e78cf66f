"""Request bodies of the OpenAI-compatible API (the fields unimae reads; unknown fields are ignored).

Types are checked here (a wrong type is a 422); values (empty input, too many inputs, lengths) are
checked by the handlers, which answer 400 with the field that is wrong.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class EmbeddingRequest(BaseModel):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class _Sampling(BaseModel):
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = Field(
        None, description="0 or absent: greedy decoding (like Encoder.generate)"
    )
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict | None = None
    user: str | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None


class ContentPart(BaseModel):
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    role: str
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None


class RagRequest(BaseModel):
    query: str
    model: str | None = None
    top_k: int = 4
    max_tokens: int | None = None
