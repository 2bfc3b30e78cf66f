"""The OpenAI-compatible server: one process, one set of weights, embeddings and generation.

    app = create_app(Encoder.from_pretrained("runs/default/model"), ServerConfig("default"))
    uvicorn.run(app, port=8000)

Routes: ``POST /v1/embeddings`` (dynamically batched), ``POST /v1/completions``, ``POST /v1/chat/completions``
(both can stream server-sent events), ``POST /v1/rag`` and ``POST /v1/rag/search`` (with an index),
``GET /v1/models``, ``GET /v1/info`` (the model card of the page), ``GET /health``; ``GET /`` is the browser
page (``ui``, unless ``ServerConfig.ui`` is off). Request bodies are typed in ``schemas``, response bodies
in ``responses`` (declared as ``response_model``s: ``/openapi.json`` documents both).
Errors are OpenAI error bodies: 400 bad values (also text that is not valid Unicode, a wrong Host), 401 API
key, 404 unknown model or route, 413 body too large, 422 wrong types, 500 a bug (logged); the server keeps
serving after each. Work for a client that disconnects stops (see ``disconnect``); what the server guards
against is in docs/security.md.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from unimae.chat import ChatTemplateError, chat_input_ids, has_chat_template
from unimae.encoding.encoder import Encoder
from unimae.rag import Hit, PromptTooLongError, RagIndex, fit_prompt
from unimae.serving import ui
from unimae.serving.batching import EmbeddingBatcher
from unimae.serving.config import ServerConfig
from unimae.serving.disconnect import ClientGone, ClientWatch
from unimae.serving.errors import APIError, error_body, error_response, install_error_handlers
from unimae.serving.generation import GenerationResult, Generator, SamplingParams, completion_prompt_ids
from unimae.serving.middleware import GuardMiddleware
from unimae.serving.responses import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionResponse,
    Embedding,
    EmbeddingResponse,
    EmbeddingUsage,
    HealthResponse,
    IndexCard,
    InfoResponse,
    ModelCard,
    ModelDetails,
    ModelList,
    RagAnswerResponse,
    RagSearchResponse,
    RagSource,
    ServerLimits,
    Usage,
)
from unimae.serving.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RagRequest,
    RagSearchRequest,
    StreamOptions,
)
from unimae.tokens import TextTooLongError

__all__ = ["ServerConfig", "create_app"]


@dataclass
class _Server:
    """What the routes share: the model, its batcher and generator, the settings, an optional RAG index."""

    encoder: Encoder
    config: ServerConfig
    batcher: EmbeddingBatcher
    generator: Generator
    rag_index: RagIndex | None
    created: int
    abandoned: int = 0  # requests whose client left before their answer (for /health)

    def watch(self, request: Request) -> ClientWatch:
        return ClientWatch(request, on_gone=self._gone)

    def _gone(self) -> None:
        self.abandoned += 1


def _state(request: Request) -> _Server:
    return request.app.state.server


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


def _tokenize(encoder: Encoder, texts: list[str], truncate: bool, param: str = "input") -> list:
    """Each text laid out once (EOS appended): the batcher embeds these and ``usage`` counts their ids;
    400 (naming ``param``) for a text over max_length if not truncating."""
    try:
        return encoder.tokenize(texts, truncate=truncate)
    except TextTooLongError as e:
        i = next(i for i, t in enumerate(texts) if _too_long(encoder, t))
        raise APIError(
            400, f"{param} item {i}: {e} (the server does not truncate)", param, "context_length_exceeded"
        ) from None


def _too_long(encoder: Encoder, text: str) -> bool:
    try:
        encoder.tokenize([text], truncate=False)
    except TextTooLongError:
        return True
    return False


def _check_max_tokens(max_tokens: int | None, param: str, config: ServerConfig) -> None:
    """400 for a length over the server's cap (not clamped: the client learns the limit)."""
    if max_tokens is not None and max_tokens > config.max_tokens_limit:
        raise APIError(
            400,
            f"'{param}' is {max_tokens}; this server generates at most {config.max_tokens_limit} tokens a request",
            param,
            "max_tokens_too_large",
        )


SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed takes


def _length_field(req) -> tuple[int | None, str]:
    """The requested length and the field that gave it: chat's ``max_completion_tokens`` when given
    (also 0, which is then refused as 0, not ignored), else ``max_tokens``."""
    given = getattr(req, "max_completion_tokens", None)
    return (given, "max_completion_tokens") if given is not None else (req.max_tokens, "max_tokens")


def _sampling(req, config: ServerConfig, default: int | None = None) -> SamplingParams:
    """The request's sampling settings; 400 naming the field for a value out of range."""
    max_tokens, length_param = _length_field(req)
    _check_max_tokens(max_tokens, length_param, config)
    if req.n != 1:
        raise APIError(400, "only n=1 is supported", "n")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > 4:
        raise APIError(400, "at most 4 stop sequences", "stop")
    if req.seed is not None and not SEED_RANGE[0] <= req.seed <= SEED_RANGE[1]:
        raise APIError(400, f"'seed' must be between {SEED_RANGE[0]} and {SEED_RANGE[1]}", "seed")
    try:
        return SamplingParams(
            max_new_tokens=(default or config.default_max_tokens) if max_tokens is None else max_tokens,
            temperature=req.temperature or 0.0,
            top_p=1.0 if req.top_p is None else req.top_p,
            stop=[s for s in stop if s],
            seed=req.seed,
        )
    except ValueError as e:
        param = str(e).split()[0]
        message = str(e).replace("max_new_tokens", length_param)
        raise APIError(400, message, length_param if param == "max_new_tokens" else param) from None


async def _generate(s: _Server, request: Request, ids: list[int], params: SamplingParams) -> GenerationResult:
    """One whole generation, stopped (ClientGone) when the client leaves."""
    async with s.watch(request) as watch:
        return await watch.run(s.generator.generate(ids, params, watch.cancel))


def _prompt_room(s: _Server, ids: list[int], params: SamplingParams, param: str) -> SamplingParams:
    try:
        params.max_new_tokens = s.generator.max_new_tokens_for(len(ids), params.max_new_tokens)
    except ValueError as e:
        raise APIError(400, str(e), param, "context_length_exceeded") from None
    return params


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


def _usage(*results: GenerationResult) -> Usage:
    """The tokens of one or more generations together."""
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _sse(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


router = APIRouter()
STREAMED = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or with 'stream': server-sent events"}
}


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> HealthResponse:
    s = _state(request)
    return HealthResponse(
        model=s.config.served_model_name,
        embedding_backend=s.encoder.backend,
        embedding_batches=s.batcher.batches,
        embedded_texts=s.batcher.texts,
        abandoned_requests=s.abandoned,
        api_key_required=bool(s.config.api_key),  # the page asks for a key before calling anything
    )


def _model_card(s: _Server) -> dict:
    """The fields of ``ModelCard`` (also the first ones of ``ModelDetails``)."""
    return {
        "id": s.config.served_model_name,
        "created": s.created,
        "embedding_dimensions": s.encoder.dim,
        "max_input_tokens": s.encoder.max_length,
        "context_length": s.encoder.context_length,
    }


def _index_card(index: RagIndex | None) -> IndexCard | None:
    """What the page shows of a loaded RAG index (counts and names, no paths of this machine)."""
    if index is None:
        return None
    files = len(index.manifest.files)
    return IndexCard(name=index.path.name, model=index.model_name, chunks=len(index), files=files)


@router.get("/v1/info", response_model=InfoResponse)
async def info(request: Request) -> InfoResponse:
    """The model card of the page: how the model embeds, what serves it, the index, the server's limits."""
    s = _state(request)
    enc, cfg = s.encoder, s.config
    card = ModelDetails(
        **_model_card(s),
        pooling=enc.pooling,
        prompt=enc.prompt,
        attention=enc.attention,
        eos_token=enc.tokenizer.convert_ids_to_tokens(enc.eos_id),
        normalized=cfg.normalize,
        backend=enc.backend,
        device=str(enc.device),
        chat_template=has_chat_template(enc.tokenizer),
    )
    limits = ServerLimits(**{name: getattr(cfg, name) for name in ServerLimits.model_fields})
    return InfoResponse(model=card, index=_index_card(s.rag_index), limits=limits)


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    return ModelList(data=[ModelCard(**_model_card(_state(request)))])


@router.get("/v1/models/{model:path}", response_model=ModelCard)
async def get_model(model: str, request: Request) -> ModelCard:
    s = _state(request)
    _check_model(s.config, model)
    return ModelCard(**_model_card(s))


@router.post("/v1/embeddings", response_model=EmbeddingResponse)
async def embeddings(req: EmbeddingRequest, request: Request) -> EmbeddingResponse:
    s = _state(request)
    _check_model(s.config, req.model)
    texts = _texts_of(req.input, "input", s.config.max_inputs)
    dims = req.dimensions
    if dims is not None and not 1 <= dims <= s.encoder.dim:
        raise APIError(400, f"'dimensions' must be between 1 and {s.encoder.dim}", "dimensions")
    if len(texts) > 32:  # long requests are tokenized off the event loop
        inputs = await run_in_threadpool(_tokenize, s.encoder, texts, s.config.truncate)
    else:
        inputs = _tokenize(s.encoder, texts, s.config.truncate)
    counts = [len(item.ids) for item in inputs]
    async with s.watch(
        request
    ) as watch:  # a request still waiting for its batch is dropped if its client left
        vecs = await watch.run(s.batcher.embed(inputs, None if dims == s.encoder.dim else dims))  # (n, dims)
    vecs = vecs.astype("<f4", copy=False)
    if req.encoding_format == "base64":
        data = [base64.b64encode(v.tobytes()).decode() for v in vecs]
    else:
        data = vecs.tolist()
    return EmbeddingResponse(
        model=s.config.served_model_name,
        data=[Embedding(index=i, embedding=e) for i, e in enumerate(data)],
        usage=EmbeddingUsage(prompt_tokens=sum(counts), total_tokens=sum(counts)),
    )


@router.post("/v1/completions", response_model=CompletionResponse, responses=STREAMED)
async def completions(req: CompletionRequest, request: Request) -> CompletionResponse | StreamingResponse:
    s = _state(request)
    _check_model(s.config, req.model)
    if req.echo or req.logprobs:
        raise APIError(400, "echo and logprobs are not supported", "echo" if req.echo else "logprobs")
    prompts = _texts_of(req.prompt, "prompt", 1 if req.stream else 16)
    params = _sampling(req, s.config, default=16)
    _check_total_tokens(len(prompts), params.max_new_tokens, s.config)
    rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": rid, "object": "text_completion", "created": now, "model": s.config.served_model_name}
    if req.stream:
        ids = completion_prompt_ids(s.encoder, prompts[0])

        def chunk(text: str, finish: str | None) -> dict:
            return {
                **head,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
            }

        return _stream_response(
            s, request, ids, _prompt_room(s, ids, params, "prompt"), chunk, req.stream_options
        )
    results = await _complete_each(s, request, prompts, params)
    choices = [
        CompletionChoice(index=i, text=r.text, finish_reason=r.finish_reason) for i, r in enumerate(results)
    ]
    return CompletionResponse(**head, choices=choices, usage=_usage(*results))


async def _complete_each(
    s: _Server, request: Request, prompts: list[str], params: SamplingParams
) -> list[GenerationResult]:
    """One generation per prompt, in turn, sharing the request's time limit."""
    results = []
    seconds_left = s.config.max_generation_seconds  # the whole request's, shared by its prompts
    for prompt in prompts:
        ids = completion_prompt_ids(s.encoder, prompt)
        room = _prompt_room(s, ids, replace(params), "prompt")
        if seconds_left > 0:
            result = await _generate(s, request, ids, replace(room, max_seconds=seconds_left))
            seconds_left -= result.seconds
        else:  # the request's time is spent: the remaining prompts get nothing, as a length stop
            result = GenerationResult("", len(ids), 0, "length")
        results.append(result)
    return results


def _check_total_tokens(n_prompts: int, max_tokens: int, config: ServerConfig) -> None:
    """400 when the prompts of one request together may generate more than ``max_tokens_limit``."""
    if n_prompts * max_tokens > config.max_tokens_limit:
        raise APIError(
            400,
            f"{n_prompts} prompts x 'max_tokens' {max_tokens} = {n_prompts * max_tokens} tokens; this server "
            f"generates at most {config.max_tokens_limit} tokens a request (all its prompts together)",
            "max_tokens",
            "max_tokens_too_large",
        )


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses=STREAMED)
async def chat_completions(
    req: ChatCompletionRequest, request: Request
) -> ChatCompletionResponse | StreamingResponse:
    s = _state(request)
    _check_model(s.config, req.model)
    if req.logprobs:
        raise APIError(400, "logprobs are not supported", "logprobs")
    messages = _chat_messages(req)
    params = _sampling(req, s.config)
    try:  # control-token text in a message stays text: no forged turns
        ids = chat_input_ids(s.encoder.tokenizer, messages)
    except ChatTemplateError as e:
        raise APIError(400, str(e), "messages") from None
    params = _prompt_room(s, ids, params, "messages")
    rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": rid, "object": "chat.completion", "created": now, "model": s.config.served_model_name}
    if req.stream:
        head = {**head, "object": "chat.completion.chunk"}

        def chunk(text: str | None, finish: str | None) -> dict:
            delta = (
                {"role": "assistant", "content": ""} if text is None else ({"content": text} if text else {})
            )
            return {
                **head,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }

        return _stream_response(s, request, ids, params, chunk, req.stream_options, role_first=True)
    result = await _generate(s, request, ids, params)
    message = AssistantMessage(content=result.text)
    choice = ChatChoice(index=0, message=message, finish_reason=result.finish_reason)
    return ChatCompletionResponse(**head, usage=_usage(result), choices=[choice])


def _rag_question(s: _Server, req: RagRequest | RagSearchRequest) -> str:
    """The question of a RAG request, after the checks both RAG routes share (404 without an index)."""
    _check_model(s.config, req.model)
    if s.rag_index is None:
        raise APIError(404, "this server has no index: start it with --index DIR", None, "no_index")
    question = _texts_of(req.query, "query", 1)[0]
    if not 1 <= req.top_k <= 50:
        raise APIError(400, "'top_k' must be between 1 and 50", "top_k")
    return question


async def _retrieve(s: _Server, watch: ClientWatch, question: str, top_k: int) -> tuple[list, int]:
    """The ``top_k`` chunks closest to ``question`` (best first), and the question's token count."""
    inputs = _tokenize(s.encoder, [question], s.config.truncate, "query")
    query_vec = (await watch.run(s.batcher.embed(inputs)))[0]
    return s.rag_index.search_vector(query_vec, top_k), len(inputs[0].ids)


def _sources(hits: list[Hit]) -> list[RagSource]:
    return [RagSource(index=i + 1, **h.to_dict()) for i, h in enumerate(hits)]


@router.post("/v1/rag", response_model=RagAnswerResponse)
async def rag(req: RagRequest, request: Request) -> RagAnswerResponse:
    s = _state(request)
    question = _rag_question(s, req)
    if req.max_tokens is not None and req.max_tokens < 1:
        raise APIError(400, "'max_tokens' must be >= 1", "max_tokens")
    _check_max_tokens(req.max_tokens, "max_tokens", s.config)
    params = SamplingParams(max_new_tokens=req.max_tokens or s.config.default_max_tokens)
    async with s.watch(request) as watch:
        hits, _ = await _retrieve(s, watch, question, req.top_k)
        try:  # the sources are cut to fit the context; retrieved text cannot forge a turn
            prompt = await run_in_threadpool(fit_prompt, s.encoder, question, hits, params.max_new_tokens)
        except PromptTooLongError as e:
            raise APIError(400, str(e), "query", "context_length_exceeded") from None
        params.max_new_tokens = prompt.max_new_tokens
        result = await watch.run(s.generator.generate(prompt.ids, params, watch.cancel))
    return RagAnswerResponse(
        model=s.config.served_model_name,
        answer=result.text,
        sources=_sources(prompt.hits),
        usage=_usage(result),
    )


@router.post("/v1/rag/search", response_model=RagSearchResponse)
async def rag_search(req: RagSearchRequest, request: Request) -> RagSearchResponse:
    """Retrieval only: the ``top_k`` chunks, whole, with their cosine to the query; nothing generated."""
    s = _state(request)
    question = _rag_question(s, req)
    async with s.watch(request) as watch:
        hits, n_tokens = await _retrieve(s, watch, question, req.top_k)
    return RagSearchResponse(
        model=s.config.served_model_name,
        sources=_sources(hits),
        usage=EmbeddingUsage(prompt_tokens=n_tokens, total_tokens=n_tokens),
    )


def _stream_response(
    s: _Server,
    request: Request,
    ids: list[int],
    params: SamplingParams,
    chunk,
    stream_options: StreamOptions | None,
    role_first: bool = False,
) -> StreamingResponse:
    """Server-sent events: a chunk per piece of text, one with the finish reason, [usage], ``data: [DONE]``."""
    head = {k: v for k, v in chunk("", None).items() if k != "choices"}

    async def events():
        async with s.watch(request) as watch:  # the client leaving stops the generation
            pieces = s.generator.stream(ids, params, watch.cancel)
            try:
                if role_first:
                    yield _sse(chunk(None, None))
                async for piece in pieces:
                    if isinstance(piece, GenerationResult):
                        yield _sse(chunk("", piece.finish_reason))
                        if stream_options is not None and stream_options.include_usage:
                            yield _sse({**head, "choices": [], "usage": _usage(piece).model_dump()})
                    else:
                        yield _sse(chunk(piece, None))
            except Exception as e:  # the headers are sent: report in the stream
                yield _sse(error_body(500, f"generation failed: {type(e).__name__}: {e}"))
            finally:
                await pieces.aclose()
            yield "data: [DONE]\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def create_app(encoder: Encoder, config: ServerConfig, rag_index=None) -> FastAPI:
    """The FastAPI app serving ``encoder`` (and ``rag_index``, a ``unimae.rag.RagIndex``, if given)."""
    batcher = EmbeddingBatcher(
        lambda inputs, dims: encoder.encode_tokenized(  # tokenized once, in the route
            inputs,
            batch_size=config.max_batch_size,
            max_tokens=config.batch_max_tokens,  # length-sorted passes with little padding
            normalize_embeddings=config.normalize,
            truncate_dim=dims,  # OpenAI's `dimensions`: the first dims, renormalized
        ),
        max_batch_size=config.max_batch_size,
        timeout_ms=config.batch_timeout_ms,
    )
    generator = Generator(encoder, max_seconds=config.max_generation_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.close()
        generator.close()

    app = FastAPI(title="unimae", lifespan=lifespan)
    app.state.server = _Server(encoder, config, batcher, generator, rag_index, int(time.time()))
    app.state.batcher, app.state.generator, app.state.config = batcher, generator, config
    install_error_handlers(app)

    @app.exception_handler(ClientGone)
    async def _client_gone(request: Request, exc: ClientGone):  # nobody reads it; no traceback in the log
        return error_response(499, "the client closed the request", code="client_closed_request")

    app.add_middleware(
        GuardMiddleware,
        api_key=config.api_key,
        max_body_bytes=config.max_body_bytes,
        allowed_hosts=config.allowed_hosts,
        open_paths=("/health", *(ui.page_paths() if config.ui else ())),
    )
    app.include_router(router)
    if config.ui:
        app.include_router(ui.router)
    return app
