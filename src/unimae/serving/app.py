"""The OpenAI-compatible server: one process, one set of weights, embeddings and generation.

    app = create_app(Encoder.from_pretrained("runs/default/model"), ServerConfig("default"))
    uvicorn.run(app, port=8000)

Routes: ``POST /v1/embeddings`` (dynamically batched), ``POST /v1/completions``, ``POST /v1/chat/completions``
(both can stream server-sent events), ``POST /v1/rag`` (with an index), ``GET /v1/models``, ``GET /health``.
Errors are OpenAI error bodies: 400 bad values, 401 API key, 404 unknown model or route, 413 body too
large, 422 wrong types, 500 a bug (logged); the server keeps serving after each.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from unimae.encoding.encoder import Encoder
from unimae.encoding.pooling import layout
from unimae.serving.batching import EmbeddingBatcher
from unimae.serving.errors import APIError, GuardMiddleware, error_body, install_error_handlers
from unimae.serving.generation import (
    GenerationResult,
    Generator,
    SamplingParams,
    chat_prompt_ids,
    completion_prompt_ids,
)
from unimae.serving.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RagRequest
from unimae.tokens import TextTooLongError


@dataclass
class ServerConfig:
    """Settings of one server.

    Args:
        served_model_name: the name clients send as ``model`` (and ``/v1/models`` lists).
        api_key: if set, every route but ``/health`` needs ``Authorization: Bearer <api_key>``.
        max_batch_size: texts per embedding forward pass (1: one request at a time).
        batch_timeout_ms: how long a lone embedding request waits for others to share its pass.
        max_inputs: most texts in one embeddings request.
        truncate: cut texts over ``max_length`` tokens (EOS kept), else reject them with 400.
        normalize: return unit-length embeddings (OpenAI does).
        max_body_bytes: larger request bodies get 413.
        default_max_tokens: chat and RAG answer length when a request gives none (completions: 16, as OpenAI).
    """

    served_model_name: str
    api_key: str | None = None
    max_batch_size: int = 32
    batch_timeout_ms: float = 5.0
    max_inputs: int = 2048
    truncate: bool = True
    normalize: bool = True
    max_body_bytes: int = 8 * 2**20
    default_max_tokens: int = 256

    def __post_init__(self):
        if not self.served_model_name:
            raise ValueError("served_model_name must not be empty")
        for name in ("max_batch_size", "max_inputs", "max_body_bytes", "default_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout_ms < 0:
            raise ValueError("batch_timeout_ms must be >= 0")


def _check_model(config: ServerConfig, model: str | None) -> None:
    if model is not None and model != config.served_model_name:
        raise APIError(
            404,
            f"model '{model}' does not exist; this server serves '{config.served_model_name}'",
            "model",
            "model_not_found",
        )


def _texts_of(value, param: str, max_inputs: int) -> list[str]:
    """A string or a list of strings, non-empty and not too many; 400 otherwise."""
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise APIError(400, f"'{param}' is an empty list", param)
    if not all(isinstance(t, str) for t in texts):
        raise APIError(400, f"'{param}' as token ids is not supported: send text", param, "unsupported_input")
    if len(texts) > max_inputs:
        raise APIError(
            400,
            f"'{param}' has {len(texts)} items; this server takes at most {max_inputs}",
            param,
            "too_many_inputs",
        )
    for i, t in enumerate(texts):
        if not t.strip():
            raise APIError(400, f"'{param}' item {i} is empty", param)
    return texts


def _token_counts(encoder: Encoder, texts: list[str], truncate: bool) -> list[int]:
    """Tokens each text is embedded with (EOS included); 400 for a text over max_length if not truncating."""
    counts = []
    for i, t in enumerate(texts):
        try:
            counts.append(
                len(
                    layout(
                        encoder.pooling,
                        encoder.tokenizer,
                        t,
                        encoder.max_length,
                        encoder.eos_id,
                        encoder.bos_id,
                        truncate,
                    ).ids
                )
            )
        except TextTooLongError as e:
            raise APIError(
                400, f"input item {i}: {e} (the server does not truncate)", "input", "context_length_exceeded"
            ) from None
    return counts


def _sampling(req, max_tokens: int | None, default: int) -> SamplingParams:
    if req.n != 1:
        raise APIError(400, "only n=1 is supported", "n")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > 4:
        raise APIError(400, "at most 4 stop sequences", "stop")
    try:
        return SamplingParams(
            max_new_tokens=default if max_tokens is None else max_tokens,
            temperature=req.temperature or 0.0,
            top_p=1.0 if req.top_p is None else req.top_p,
            stop=[s for s in stop if s],
            seed=req.seed,
        )
    except ValueError as e:
        param = str(e).split()[0]
        raise APIError(400, str(e), "max_tokens" if param == "max_new_tokens" else param) from None


def _chat_messages(req: ChatCompletionRequest) -> list[dict]:
    if not req.messages:
        raise APIError(400, "'messages' is empty", "messages")
    out = []
    for i, m in enumerate(req.messages):
        role = "system" if m.role == "developer" else m.role
        if role not in ("system", "user", "assistant"):
            raise APIError(
                400, f"messages[{i}].role {m.role!r} is not supported (system, user, assistant)", "messages"
            )
        content = m.content
        if isinstance(content, list):
            if any(p.type != "text" for p in content):
                raise APIError(400, f"messages[{i}]: only text content parts are supported", "messages")
            content = "".join(p.text or "" for p in content)
        out.append({"role": role, "content": content or ""})
    return out


def _usage(result: GenerationResult) -> dict:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _sse(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def create_app(encoder: Encoder, config: ServerConfig, rag_index=None) -> FastAPI:
    """The FastAPI app serving ``encoder`` (and ``rag_index``, a ``unimae.serving.rag.RagIndex``, if given)."""
    batcher = EmbeddingBatcher(
        lambda texts: encoder.encode(
            texts, batch_size=config.max_batch_size, normalize=config.normalize, truncate=config.truncate
        ),
        max_batch_size=config.max_batch_size,
        timeout_ms=config.batch_timeout_ms,
    )
    generator = Generator(encoder)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.close()
        generator.close()

    app = FastAPI(title="unimae", lifespan=lifespan)
    app.state.batcher, app.state.generator, app.state.config = batcher, generator, config
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, api_key=config.api_key, max_body_bytes=config.max_body_bytes)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": config.served_model_name,
            "embedding_batches": batcher.batches,
            "embedded_texts": batcher.texts,
        }

    def model_card() -> dict:
        return {
            "id": config.served_model_name,
            "object": "model",
            "created": created,
            "owned_by": "unimae",
            "embedding_dimensions": encoder.dim,
            "max_input_tokens": encoder.max_length,
            "context_length": encoder.context_length,
        }

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str):
        _check_model(config, model)
        return model_card()

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingRequest):
        _check_model(config, req.model)
        texts = _texts_of(req.input, "input", config.max_inputs)
        dims = req.dimensions
        if dims is not None and not 1 <= dims <= encoder.dim:
            raise APIError(400, f"'dimensions' must be between 1 and {encoder.dim}", "dimensions")
        if len(texts) > 32:  # long requests are tokenized off the event loop
            counts = await run_in_threadpool(_token_counts, encoder, texts, config.truncate)
        else:
            counts = _token_counts(encoder, texts, config.truncate)
        vecs = await batcher.embed(texts)  # (n, d)
        if dims is not None and dims < encoder.dim:  # shortened like OpenAI's: first dims, renormalized
            vecs = vecs[:, :dims]
            if config.normalize:
                vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True).clip(1e-12)
        vecs = np.ascontiguousarray(vecs, dtype="<f4")
        if req.encoding_format == "base64":
            data = [base64.b64encode(v.tobytes()).decode() for v in vecs]
        else:
            data = vecs.tolist()
        return JSONResponse(
            {
                "object": "list",
                "model": config.served_model_name,
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
                "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)},
            }
        )

    def prompt_room(ids: list[int], params: SamplingParams, param: str) -> SamplingParams:
        try:
            params.max_new_tokens = generator.max_new_tokens_for(len(ids), params.max_new_tokens)
        except ValueError as e:
            raise APIError(400, str(e), param, "context_length_exceeded") from None
        return params

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        _check_model(config, req.model)
        if req.echo or req.logprobs:
            raise APIError(400, "echo and logprobs are not supported", "echo" if req.echo else "logprobs")
        prompts = _texts_of(req.prompt, "prompt", 1 if req.stream else 16)
        params = _sampling(req, req.max_tokens, 16)
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": config.served_model_name}
        if req.stream:
            ids = completion_prompt_ids(encoder, prompts[0])
            params = prompt_room(ids, params, "prompt")

            def chunk(text: str, finish: str | None) -> dict:
                return {
                    **head,
                    "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                }

            return _stream_response(generator.stream(ids, params), chunk, head, req.stream_options)
        choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for i, prompt in enumerate(prompts):
            ids = completion_prompt_ids(encoder, prompt)
            result = await generator.generate(ids, prompt_room(ids, params, "prompt"))
            choices.append(
                {"index": i, "text": result.text, "finish_reason": result.finish_reason, "logprobs": None}
            )
            usage = {k: usage[k] + v for k, v in _usage(result).items()}
        return {**head, "choices": choices, "usage": usage}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest):
        _check_model(config, req.model)
        if req.logprobs:
            raise APIError(400, "logprobs are not supported", "logprobs")
        messages = _chat_messages(req)
        params = _sampling(req, req.max_completion_tokens or req.max_tokens, config.default_max_tokens)
        try:
            ids = chat_prompt_ids(encoder, messages)
        except ValueError as e:
            raise APIError(400, str(e), "messages") from None
        params = prompt_room(ids, params, "messages")
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "chat.completion", "created": now, "model": config.served_model_name}
        if req.stream:
            head = {**head, "object": "chat.completion.chunk"}

            def chunk(text: str | None, finish: str | None) -> dict:
                delta = (
                    {"role": "assistant", "content": ""}
                    if text is None
                    else ({"content": text} if text else {})
                )
                return {
                    **head,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                }

            return _stream_response(
                generator.stream(ids, params), chunk, head, req.stream_options, role_first=True
            )
        result = await generator.generate(ids, params)
        return {
            **head,
            "usage": _usage(result),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
        }

    @app.post("/v1/rag")
    async def rag(req: RagRequest):
        from unimae.serving.rag import build_prompt

        _check_model(config, req.model)
        if rag_index is None:
            raise APIError(404, "this server has no index: start it with --index DIR", None, "no_index")
        question = _texts_of(req.query, "query", 1)[0]
        if not 1 <= req.top_k <= 50:
            raise APIError(400, "'top_k' must be between 1 and 50", "top_k")
        if req.max_tokens is not None and req.max_tokens < 1:
            raise APIError(400, "'max_tokens' must be >= 1", "max_tokens")
        params = SamplingParams(max_new_tokens=req.max_tokens or config.default_max_tokens)
        _token_counts(encoder, [question], True)
        query_vec = (await batcher.embed([question]))[0]
        hits = rag_index.search_vector(query_vec, req.top_k)
        try:
            ids = chat_prompt_ids(encoder, [{"role": "user", "content": build_prompt(question, hits)}])
        except ValueError:
            ids = completion_prompt_ids(encoder, build_prompt(question, hits))
        result = await generator.generate(ids, prompt_room(ids, params, "query"))
        return {
            "object": "rag.answer",
            "model": config.served_model_name,
            "answer": result.text,
            "sources": [{"index": i + 1, **h.to_dict()} for i, h in enumerate(hits)],
            "usage": _usage(result),
        }

    return app


def _stream_response(
    pieces: AsyncIterator, chunk, head: dict, stream_options: dict | None, role_first: bool = False
) -> StreamingResponse:
    """Server-sent events: a chunk per piece of text, one with the finish reason, [usage], ``data: [DONE]``."""

    async def events():
        try:
            try:
                if role_first:
                    yield _sse(chunk(None, None))
                async for piece in pieces:
                    if isinstance(piece, GenerationResult):
                        yield _sse(chunk("", piece.finish_reason))
                        if stream_options and stream_options.get("include_usage"):
                            yield _sse({**head, "choices": [], "usage": _usage(piece)})
                    else:
                        yield _sse(chunk(piece, None))
            except Exception as e:  # the headers are sent: report in the stream
                yield _sse(error_body(500, f"generation failed: {type(e).__name__}: {e}"))
            yield "data: [DONE]\n\n"
        finally:  # also when the client leaves: stops the generation
            await pieces.aclose()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
