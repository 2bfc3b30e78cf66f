"""Response bodies of the server, as typed models: FastAPI declares them as ``response_model``s, so
``/openapi.json`` documents every field, and serializes them with pydantic's JSON encoder.

Field order is the order of the JSON objects sent (as OpenAI's). Streamed chunks (``stream: true``) and
error bodies (``unimae.serving.errors``) are not covered here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FinishReason = Literal["stop", "length"]


class HealthResponse(BaseModel):
    """``GET /health``: always answered (no API key); counters since the start."""

    status: Literal["ok"] = "ok"
    model: str = Field(description="the served model name")
    embedding_backend: str = Field(description="what computes embeddings: torch, onnx, ...")
    embedding_batches: int = Field(description="batches the embedding batcher has run")
    embedded_texts: int = Field(description="texts embedded")
    abandoned_requests: int = Field(description="requests whose client left before their answer")
    api_key_required: bool = Field(description="whether the data routes need 'Authorization: Bearer KEY'")


class ModelCard(BaseModel):
    """One model of ``GET /v1/models`` (the only one this server serves)."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when the server started (Unix seconds)")
    owned_by: Literal["unimae"] = "unimae"
    embedding_dimensions: int
    max_input_tokens: int = Field(description="tokens per embedded text incl. EOS")
    context_length: int | None = Field(description="the model's context in tokens (None: unbounded)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ModelDetails(ModelCard):
    """The model card of ``GET /v1/info``: how the model embeds and what serves it."""

    pooling: str
    prompt: str | None = Field(description="the template around an embedded text ('{text}' once)")
    attention: str
    eos_token: str | None = Field(description="the token appended to every embedded text")
    normalized: bool = Field(description="whether embeddings are L2-normalized")
    backend: str
    device: str
    chat_template: bool


class IndexCard(BaseModel):
    """The loaded RAG index: counts and names, no paths of the server's machine."""

    name: str = Field(description="the index folder's name")
    model: str = Field(description="the model that built it")
    chunks: int
    files: int


class ServerLimits(BaseModel):
    max_inputs: int
    max_body_bytes: int
    default_max_tokens: int
    max_tokens_limit: int
    truncate: bool


class InfoResponse(BaseModel):
    """``GET /v1/info``: what the browser page shows."""

    object: Literal["server.info"] = "server.info"
    model: ModelDetails
    index: IndexCard | None = Field(description="None: the server has no index (no RAG routes)")
    limits: ServerLimits


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """``POST /v1/embeddings``."""

    object: Literal["list"] = "list"
    model: str
    data: list[Embedding]
    usage: EmbeddingUsage


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: None = None


class CompletionResponse(BaseModel):
    """``POST /v1/completions`` (not streamed)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    """``POST /v1/chat/completions`` (not streamed)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    usage: Usage
    choices: list[ChatChoice]


class RagSource(BaseModel):
    """A retrieved chunk: ``[index]`` in the answer's citations."""

    index: int = Field(description="its number in the prompt, as cited: [1], [2], ...")
    id: int = Field(description="the chunk's id in the index")
    source: str = Field(description="what to cite: 'file.md#3' (its 3rd chunk) or 'file.md' (one chunk)")
    document: str
    chunk: int = Field(description="the chunk's number in its document, from 1")
    score: float = Field(description="cosine similarity to the query (4 decimals)")
    text: str


class RagAnswerResponse(BaseModel):
    """``POST /v1/rag``: the answer and the sources it was given (the last may be cut to fit)."""

    object: Literal["rag.answer"] = "rag.answer"
    model: str
    answer: str
    sources: list[RagSource]
    usage: Usage


class RagSearchResponse(BaseModel):
    """``POST /v1/rag/search``: the closest chunks, whole; nothing generated."""

    object: Literal["rag.search"] = "rag.search"
    model: str
    sources: list[RagSource]
    usage: EmbeddingUsage
