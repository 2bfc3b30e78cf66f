"""The OpenAI-compatible server: a real `unimae serve` process on 127.0.0.1, driven by the official client.

Batching is unit-tested on the batcher; other server settings (truncation, RAG) with an in-process client.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from conftest import random_sentences

from unimae.encoding.encoder import Encoder
from unimae.serving.app import ServerConfig, create_app
from unimae.serving.batching import EmbeddingBatcher
from unimae.serving.generation import cut_at_stop

openai = pytest.importorskip("openai")

API_KEY = "test-key"
NAME = "tiny"
MAX_LENGTH = 16
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} . {% endfor %}"
    "{% if add_generation_prompt %}the{% endif %}"
)


@pytest.fixture(scope="module")
def chat_model(tiny_llama, tmp_path_factory):
    """The tiny Llama with a chat template (word-level, so the template's words are in its vocabulary)."""
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("chat_llama") / "model"
    shutil.copytree(tiny_llama, path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


def wait_until_up(proc: subprocess.Popen, port: int) -> str:
    """The base URL once the server process answers /health (fails if it exits or takes over 60 s)."""
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("server did not start in 60 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(chat_model):
    """`unimae serve` in its own process; yields its base URL; SIGTERM at the end."""
    port = free_port()
    env = {**os.environ, "UNIMAE_API_KEY": API_KEY, "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "unimae.cli",
        "serve",
        str(chat_model),
        "--port",
        str(port),
        "--served-model-name",
        NAME,
        "--max-inputs",
        "8",
        "--max-body-bytes",
        "65536",
        "--no-truncate",
        "--max-length",
        str(MAX_LENGTH),
        "--batch-timeout-ms",
        "20",
        "--device",
        "cpu",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = wait_until_up(proc, port)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("server did not stop on SIGTERM")
    out = proc.stdout.read()
    # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is a clean exit
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in out, out


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def encoder(chat_model):
    return Encoder.from_pretrained(str(chat_model), device="cpu", max_length=MAX_LENGTH)


def _healthy(url: str) -> bool:
    return httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok"


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == [NAME]
    assert client.models.retrieve(NAME).id == NAME
    assert _healthy(server)


def test_embeddings_equal_encode(client, encoder):
    texts = random_sentences(6, seed=1, lo=1, hi=12)
    want = encoder.encode(texts, normalize_embeddings=True)
    got = client.embeddings.create(model=NAME, input=texts)  # the client asks for base64 by default
    assert [d.index for d in got.data] == list(range(6))
    assert np.allclose(np.array([d.embedding for d in got.data]), want, atol=1e-5)
    as_float = client.embeddings.create(model=NAME, input=texts[0], encoding_format="float")
    assert np.allclose(as_float.data[0].embedding, want[0], atol=1e-5)
    assert got.usage.prompt_tokens == sum(len(encoder.tokenizer(t).input_ids) + 1 for t in texts)  # + EOS
    short = np.array(client.embeddings.create(model=NAME, input=texts[0], dimensions=8).data[0].embedding)
    assert short.shape == (8,) and np.isclose(np.linalg.norm(short), 1, atol=1e-5)


def test_concurrent_requests_are_answered_correctly(server, encoder):
    texts = random_sentences(16, seed=2, lo=1, hi=10)
    want = encoder.encode(texts, normalize_embeddings=True)

    async def run():
        async with openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0) as c:
            return await asyncio.gather(*[c.embeddings.create(model=NAME, input=t) for t in texts])

    got = np.array([r.data[0].embedding for r in asyncio.run(run())])
    assert np.allclose(got, want, atol=1e-5)


def test_completions_and_chat_return_text(client):
    c = client.completions.create(model=NAME, prompt="the cat runs", max_tokens=4)
    assert isinstance(c.choices[0].text, str) and c.usage.completion_tokens == 4
    assert c.choices[0].finish_reason == "length"
    chat = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "the dog"}], max_tokens=3
    )
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content
    assert chat.usage.completion_tokens == 3


def test_stop_strings_cut_the_text(client):
    full = client.completions.create(model=NAME, prompt="the dog runs", max_tokens=6).choices[0].text
    stop = full.split()[-1]  # a word the model does write
    want = full[: full.find(stop)]
    got = client.completions.create(model=NAME, prompt="the dog runs", max_tokens=6, stop=[stop, "zzz"])
    assert got.choices[0].text == want and got.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=NAME, prompt="the dog runs", max_tokens=6, stop=stop, stream=True
    )
    assert "".join(p.choices[0].text for p in streamed) == want


def test_chat_streaming(client):
    messages = [{"role": "system", "content": "a cat"}, {"role": "user", "content": "the dog runs"}]
    full = client.chat.completions.create(model=NAME, messages=messages, max_tokens=6)
    stream = client.chat.completions.create(
        model=NAME, messages=messages, max_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content  # greedy: the same text, streamed in pieces
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 6
    pieces = list(client.completions.create(model=NAME, prompt="the cat", max_tokens=3, stream=True))
    assert (
        "".join(p.choices[0].text for p in pieces)
        == client.completions.create(model=NAME, prompt="the cat", max_tokens=3).choices[0].text
    )


def test_errors_arrive_as_client_exceptions_and_server_goes_on(client, server):
    long_text = " ".join(["the cat runs"] * 20)  # over max_length=16 tokens; this server does not truncate
    cases = [
        (openai.BadRequestError, lambda: client.embeddings.create(model=NAME, input=[])),
        (openai.BadRequestError, lambda: client.embeddings.create(model=NAME, input="  ")),
        (openai.BadRequestError, lambda: client.embeddings.create(model=NAME, input=["a cat"] * 9)),
        (openai.BadRequestError, lambda: client.embeddings.create(model=NAME, input=long_text)),
        (openai.BadRequestError, lambda: client.embeddings.create(model=NAME, input="a", dimensions=10_000)),
        (openai.UnprocessableEntityError, lambda: client.embeddings.create(model=NAME, input=[{"x": 1}])),
        (openai.UnprocessableEntityError, lambda: client.chat.completions.create(model=NAME, messages="hi")),
        (openai.BadRequestError, lambda: client.completions.create(model=NAME, prompt="the", max_tokens=0)),
        (openai.NotFoundError, lambda: client.embeddings.create(model="gpt-4", input="a cat")),
        (openai.APIStatusError, lambda: client.embeddings.create(model=NAME, input=["x" * 1000] * 70)),
    ]
    for error, call in cases:
        with pytest.raises(error) as info:
            call()
        body = info.value.body
        assert set(body) >= {"message", "type", "param", "code"}, body
        assert _healthy(server)
    assert info.value.status_code == 413
    too_long = pytest.raises(openai.BadRequestError, client.embeddings.create, model=NAME, input=long_text)
    assert too_long.value.code == "context_length_exceeded"
    assert client.embeddings.create(model=NAME, input="a cat").data  # still serving


def test_api_key_is_required(server):
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=NAME, input="a cat")
    assert httpx.post(f"{server}/v1/embeddings", json={"input": "a"}).status_code == 401
    assert _healthy(server)  # the health check needs no key


# --- in-process: batching, truncation, RAG ---------------------------------------------------------


def test_batcher_merges_waiting_requests():
    calls = []

    def embed(texts, dims):
        calls.append(list(texts))
        return np.array([[float(t)] for t in texts])

    async def run(max_batch_size):
        b = EmbeddingBatcher(embed, max_batch_size=max_batch_size, timeout_ms=50)
        await b.start()
        try:
            # all ten are queued before the worker runs: it takes them in batches
            out = await asyncio.gather(*[b.embed([str(i)]) for i in range(10)], b.embed(["10", "11", "12"]))
        finally:
            await b.close()
        return out, b.batches

    out, batches = asyncio.run(run(32))
    assert batches == 1 and calls == [[str(i) for i in range(13)]]
    assert [o[:, 0].tolist() for o in out] == [[float(i)] for i in range(10)] + [[10.0, 11.0, 12.0]]
    calls.clear()
    out, batches = asyncio.run(run(4))
    assert (
        batches == 4
        and max(len(c) for c in calls) <= 4
        and sorted(sum(calls, [])) == sorted(map(str, range(13)))
    )
    calls.clear()
    out, batches = asyncio.run(run(1))  # one request at a time; a larger request still goes whole
    assert batches == 11 and [len(c) for c in calls] == [1] * 10 + [3]


def test_batcher_error_fails_only_that_batch():
    async def run():
        b = EmbeddingBatcher(lambda t, d: 1 / 0 if t == ["bad"] else np.ones((len(t), 2)), max_batch_size=1)
        await b.start()
        with pytest.raises(ZeroDivisionError):
            await b.embed(["bad"])
        ok = await b.embed(["good"])
        await b.close()
        return ok

    assert asyncio.run(run()).shape == (1, 2)


def test_truncating_server_embeds_long_texts_like_encode(encoder):
    from fastapi.testclient import TestClient

    texts = [" ".join(["the cat runs"] * 20), "a dog"]
    with TestClient(create_app(encoder, ServerConfig(NAME, truncate=True))) as c:
        r = c.post("/v1/embeddings", json={"input": texts, "model": NAME})
        assert r.status_code == 200
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert np.allclose(got, encoder.encode(texts, normalize_embeddings=True), atol=1e-5)
        short = len(encoder.tokenizer(texts[1]).input_ids) + 1
        assert r.json()["usage"]["prompt_tokens"] == MAX_LENGTH + short  # truncated to max_length, EOS kept
        assert (
            c.post(
                "/v1/embeddings", content=b"{oops", headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
        assert c.get("/v1/nothing").json()["error"]["type"] == "invalid_request_error"


def test_rag_route(encoder, tmp_path):
    from fastapi.testclient import TestClient

    from unimae.rag import build_index

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("the cat sings in the city .")
    (tmp_path / "docs" / "b.md").write_text("a bird flies over the ocean .")
    index, _ = build_index(encoder, [tmp_path / "docs"], tmp_path / "index", model_name=NAME)
    with TestClient(create_app(encoder, ServerConfig(NAME), rag_index=index)) as c:
        r = c.post("/v1/rag", json={"query": "a bird flies over the ocean .", "top_k": 2, "max_tokens": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["sources"][0]["source"] == "b.md" and body["sources"][0]["index"] == 1
        assert isinstance(body["answer"], str) and body["usage"]["completion_tokens"] <= 4
        assert c.post("/v1/rag", json={"query": "x", "top_k": 0}).status_code == 400


RESPONSE_MODELS = {
    ("get", "/health"): "HealthResponse",
    ("get", "/v1/models"): "ModelList",
    ("get", "/v1/models/{model}"): "ModelCard",
    ("get", "/v1/info"): "InfoResponse",
    ("post", "/v1/embeddings"): "EmbeddingResponse",
    ("post", "/v1/completions"): "CompletionResponse",
    ("post", "/v1/chat/completions"): "ChatCompletionResponse",
    ("post", "/v1/rag"): "RagAnswerResponse",
    ("post", "/v1/rag/search"): "RagSearchResponse",
}


def test_openapi_documents_every_response_body(encoder, tmp_path):
    """Each JSON route declares its typed response model; each body the server sends validates against it."""
    from fastapi.testclient import TestClient

    from unimae.rag import build_index
    from unimae.serving import responses

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("the cat sings in the city .")
    index, _ = build_index(encoder, [tmp_path / "docs"], tmp_path / "index", model_name=NAME)
    calls = {
        ("get", "/v1/models/{model}"): ("get", f"/v1/models/{NAME}", None),
        ("post", "/v1/embeddings"): (
            "post",
            "/v1/embeddings",
            {"input": ["the cat"], "encoding_format": "base64"},
        ),
        ("post", "/v1/completions"): ("post", "/v1/completions", {"prompt": ["a", "the"], "max_tokens": 2}),
        ("post", "/v1/chat/completions"): (
            "post",
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "the cat"}], "max_tokens": 2},
        ),
        ("post", "/v1/rag"): ("post", "/v1/rag", {"query": "a cat", "top_k": 1, "max_tokens": 2}),
        ("post", "/v1/rag/search"): ("post", "/v1/rag/search", {"query": "a cat", "top_k": 1}),
    }
    with TestClient(create_app(encoder, ServerConfig(NAME), rag_index=index)) as c:
        spec = c.get("/openapi.json").json()
        for (method, path), name in RESPONSE_MODELS.items():
            content = spec["paths"][path][method]["responses"]["200"]["content"]
            assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
            how, url, body = calls.get((method, path), (method, path, None))
            r = c.request(how, url, json=body)
            assert r.status_code == 200, r.text
            getattr(responses, name).model_validate_json(r.content)  # the body is what the schema says
        assert (
            "text/event-stream"
            in spec["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
        )
        assert c.get("/v1/info").json()["index"] == {"name": "index", "model": NAME, "chunks": 1, "files": 1}


def test_cut_at_stop():
    assert cut_at_stop("the cat. the dog", [".", "dog"]) == ("the cat", True)
    assert cut_at_stop("the cat", ["x"]) == ("the cat", False)
