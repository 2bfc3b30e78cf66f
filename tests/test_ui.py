"""The browser page of `unimae serve`: a real server process on a tiny model, driven by a real headless Chromium.

Needs Debian's ``chromium`` (``scripts/setup.sh`` installs it; ``UNIMAE_CHROMIUM`` names another binary) and
the ``playwright`` package (the dev extra), which drives that binary: no browser is downloaded. Without them
these tests fail, unless ``UNIMAE_SKIP_BROWSER=1`` is set: then they are skipped with the reason. A PNG of
each tab is saved to ``UNIMAE_UI_SCREENSHOTS`` (default: a temporary folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from test_serving import CHAT_TEMPLATE, free_port, wait_until_up

from unimae.encoding.encoder import Encoder
from unimae.rag import build_index
from unimae.serving.app import create_app
from unimae.serving.config import ServerConfig
from unimae.serving.ui import CONTENT_SECURITY_POLICY

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the `browser` fixture says so: a failure, or a skip with UNIMAE_SKIP_BROWSER=1
    expect = sync_playwright = None

API_KEY = "ui-test-key"
NAME = "tiny"
MAX_LENGTH = 64
MAX_BODY = 65536
TIMEOUT_MS = 30_000
XSS_TEXT = "<script>window.__xss=1</script> <img src=x onerror=window.__xss=2> here"
XSS_FILE = "x<img src=x onerror=window.__xss=3>.md"
CHROMIUM_ARGS = [  # as root, and on a machine whose network reaches only package registries
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def ui_model(tmp_path_factory):
    """A tiny Llama with a word-level chat template and a 100k context that never emits EOS: every reply
    runs to max_tokens, so a long one lasts seconds and can be stopped."""
    from conftest import make_tiny_llama
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    path = make_tiny_llama(tmp_path_factory.mktemp("ui_model") / "model")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHAT_TEMPLATE
    cfg = AutoConfig.from_pretrained(path)
    cfg.max_position_embeddings = 100_000
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = None
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def encoder(ui_model):
    return Encoder.from_pretrained(str(ui_model), device="cpu", max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def ui_index(encoder, tmp_path_factory):
    """An index of three one-chunk documents (one of them markup, in a file whose name is markup too) and
    one of three chunks (8 words each)."""
    docs = tmp_path_factory.mktemp("ui_docs")
    (docs / "a.txt").write_text("the cat sings in the city .")
    (docs / "b.md").write_text("a bird flies over the ocean .")
    (docs / XSS_FILE).write_text(XSS_TEXT)
    (docs / "long.txt").write_text(" ".join(["the king reads a book", "the army builds a house"] * 2))
    index, _ = build_index(encoder, [docs], docs.parent / "ui_index", NAME, chunk_words=8, overlap=2)
    return index


@pytest.fixture(scope="module")
def server(ui_model, ui_index):
    """`unimae serve MODEL --index DIR` with an API key, in its own process; yields its base URL."""
    port = free_port()
    env = {**os.environ, "UNIMAE_API_KEY": API_KEY, "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "unimae.cli", "serve", str(ui_model), "--port", str(port)]
    cmd += ["--index", str(ui_index.path), "--served-model-name", NAME, "--max-length", str(MAX_LENGTH)]
    cmd += ["--max-body-bytes", str(MAX_BODY), "--device", "cpu", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = wait_until_up(proc, port)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    out = proc.stdout.read()
    assert "Traceback" not in out, out


def _missing_browser() -> str | None:
    if sync_playwright is None:
        return "the playwright package is not installed"
    if not _chromium():
        return "no chromium binary (looked for UNIMAE_CHROMIUM, chromium, chromium-browser)"
    return None


def _chromium() -> str | None:
    return os.environ.get("UNIMAE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    missing = _missing_browser()
    if missing is not None:
        if os.environ.get("UNIMAE_SKIP_BROWSER") == "1":
            pytest.skip(f"browser tests skipped (UNIMAE_SKIP_BROWSER=1): {missing}")
        pytest.fail(
            f"{missing}: scripts/setup.sh installs it (apt-get install chromium; pip install -e '.[dev]'); "
            "set UNIMAE_SKIP_BROWSER=1 to skip the page's tests instead",
            pytrace=False,
        )
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots of the tabs go."""
    folder = os.environ.get("UNIMAE_UI_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("ui_screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Page:
    """One browser tab on the server's page, with what its console reported as errors."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1100, "height": 820})
        self.tab = self.context.new_page()
        self.tab.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tab.goto(url)

    def enter_key(self, key: str) -> None:
        self.tab.fill("#key-input", key)
        self.tab.click("#key-submit")

    def ready(self) -> Page:
        self.enter_key(API_KEY)
        self.tab.wait_for_selector("body[data-ready='1']")
        return self

    def tab_to(self, name: str) -> None:
        self.tab.click(f"#tab-{name}")


@pytest.fixture
def page(browser, server):
    """A fresh tab (empty sessionStorage) on the page, the key entered."""
    p = Page(browser, server)
    yield p.ready()
    p.context.close()


def _health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=10).json()


def _auth() -> dict:
    return {"Authorization": f"Bearer {API_KEY}"}


# --- the page's files and routes, without a browser -------------------------------------------------------


def test_page_files_carry_the_policy_and_need_no_key(server):
    r = httpx.get(f"{server}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert not re.search(r"<script>|<style|\son[a-z]+=|style=", r.text)  # no inline script or style
    js = httpx.get(f"{server}/ui/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{server}/ui/style.css").headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert httpx.get(f"{server}/ui/missing.js", headers=_auth()).status_code == 404
    assert httpx.get(f"{server}/ui/..%2Fapp.py", headers=_auth()).status_code == 404
    # the Host check covers the page; the data routes it calls still need the key
    assert httpx.get(f"{server}/", headers={"host": "evil.example"}).status_code == 400
    assert httpx.get(f"{server}/v1/info").status_code == 401
    assert _health(server)["api_key_required"] is True


def test_info_and_search_routes(server):
    info = httpx.get(f"{server}/v1/info", headers=_auth()).json()
    model = info["model"]
    assert model["id"] == NAME and model["pooling"] == "eos" and model["embedding_dimensions"] == 32
    assert model["backend"] == "torch" and model["chat_template"] is True and model["max_input_tokens"] == 64
    assert info["index"] == {"name": "ui_index", "model": NAME, "chunks": 6, "files": 4}
    assert info["limits"]["max_body_bytes"] == MAX_BODY
    r = httpx.post(
        f"{server}/v1/rag/search",
        json={"query": "a bird flies over the ocean .", "top_k": 3},
        headers=_auth(),
    )
    body = r.json()
    assert r.status_code == 200 and body["object"] == "rag.search" and len(body["sources"]) == 3
    top = body["sources"][0]
    assert (top["index"], top["source"], top["document"], top["chunk"]) == (1, "b.md", "b.md", 1)
    assert top["score"] == pytest.approx(1.0, abs=1e-3) and top["text"] == "a bird flies over the ocean ."
    assert [s["score"] for s in body["sources"]] == sorted(
        (s["score"] for s in body["sources"]), reverse=True
    )
    bad = httpx.post(f"{server}/v1/rag/search", json={"query": "x", "top_k": 0}, headers=_auth())
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "top_k"


def test_no_ui_turns_the_page_off(encoder):
    from fastapi.testclient import TestClient

    with TestClient(create_app(encoder, ServerConfig(NAME, api_key="k", ui=False))) as c:
        assert c.get("/").status_code == 401  # no open page paths: an unknown route behind the key
        assert c.get("/", headers={"Authorization": "Bearer k"}).status_code == 404
        assert c.get("/ui/app.js", headers={"Authorization": "Bearer k"}).status_code == 404
        assert c.get("/v1/info", headers={"Authorization": "Bearer k"}).json()["index"] is None
    with TestClient(create_app(encoder, ServerConfig(NAME))) as c:
        assert c.get("/").status_code == 200
        assert c.post("/v1/rag/search", json={"query": "a"}).json()["error"]["code"] == "no_index"


# --- in the browser -----------------------------------------------------------------------------------------


def test_page_loads_with_the_model_card_and_no_console_errors(page, server):
    card = page.tab.locator("#card")
    expect(card).to_contain_text("eos")
    expect(card).to_contain_text("ui_index: 6 chunks from 4 files")
    expect(page.tab.locator("#model-name")).to_have_text(NAME)
    assert page.tab.evaluate("sessionStorage.getItem('unimae.apiKey')") == API_KEY
    assert page.context.cookies() == [] and API_KEY not in page.tab.url
    assert page.errors == []


def test_the_browser_enforces_the_policy(page):
    """Inline script does not run and a request to another origin is refused, by the browser itself."""
    result = page.tab.evaluate(
        """async () => {
            const seen = [];
            document.addEventListener("securitypolicyviolation", (e) => seen.push(e.effectiveDirective));
            const inline = document.createElement("script");
            inline.textContent = "window.__inline = 1";
            document.body.append(inline);
            let request = "sent";
            try { await fetch("http://127.0.0.2:9/"); } catch (e) { request = "refused"; }
            await new Promise((resolve) => setTimeout(resolve, 200));
            return {inline: window.__inline === undefined, request, seen};
        }"""
    )
    assert result["inline"] and result["request"] == "refused"
    assert {"script-src-elem", "connect-src"} <= set(result["seen"]), result


def test_chat_streams_text_and_keeps_the_conversation(page, server, shots):
    sent = []
    page.tab.on(
        "request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/chat/completions") else None
    )
    page.tab.fill("#chat-max-tokens", "8")
    page.tab.fill("#chat-input", "the dog runs")
    page.tab.click("#chat-send")
    reply = page.tab.locator(".message.assistant .text").first
    expect(page.tab.locator(".message.assistant .note").first).to_have_text("(cut at max tokens)")
    want = httpx.post(
        f"{server}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "the dog runs"}], "max_tokens": 8},
        headers=_auth(),
        timeout=60,
    ).json()["choices"][0]["message"]["content"]
    assert reply.text_content() == want and want.strip()  # greedy: the same text as one non-streamed reply
    page.tab.fill("#chat-input", "a cat")
    page.tab.press("#chat-input", "Enter")
    expect(page.tab.locator(".message.assistant .note")).to_have_count(2)
    assert [m["role"] for m in sent[1]["messages"]] == ["user", "assistant", "user"]
    assert sent[1]["messages"][1]["content"] == want and sent[1]["stream"] is True
    page.tab.screenshot(path=str(shots / "chat.png"))
    assert page.errors == []


def test_stop_buttons_stop_the_generation_on_the_server(page, server):
    before = _health(server)["abandoned_requests"]
    page.tab.fill("#chat-max-tokens", "4000")  # minutes of tokens on this model if nothing stopped it
    page.tab.fill("#chat-input", "the bird")
    page.tab.click("#chat-send")
    expect(page.tab.locator(".message.assistant .text")).not_to_have_text("")
    assert page.tab.locator("#chat-stop").is_enabled()  # text is in the page while the reply is generated
    page.tab.click("#chat-stop")
    expect(page.tab.locator(".message.assistant .note")).to_have_text("(stopped)")
    deadline = time.monotonic() + 10
    while _health(server)["abandoned_requests"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _health(server)["abandoned_requests"] == before + 1
    start = time.monotonic()  # the generator is free again
    r = httpx.post(
        f"{server}/v1/completions", json={"prompt": "the", "max_tokens": 2}, headers=_auth(), timeout=60
    )
    assert r.status_code == 200 and time.monotonic() - start < 10
    assert page.tab.locator("#chat-send").is_enabled()
    page.tab_to("search")  # Ask is one request: its Stop abandons it, and the server stops it too
    page.tab.fill("#search-query", "the king")
    page.tab.fill("#ask-max-tokens", "4000")
    page.tab.click("#ask-run")
    expect(page.tab.locator("#ask-stop")).to_be_enabled()
    time.sleep(0.5)  # the answer is being generated
    page.tab.click("#ask-stop")
    expect(page.tab.locator("#search-status")).to_have_text("stopped (no answer)")
    deadline = time.monotonic() + 10
    while _health(server)["abandoned_requests"] == before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _health(server)["abandoned_requests"] == before + 2 and page.errors == []


def test_compare_shows_the_cosine_matrix(page, server, shots):
    texts = ["the cat sings in the city .", "the cat sings .", "a bird flies over the ocean .", XSS_TEXT]
    page.tab_to("compare")
    page.tab.fill("#compare-input", "\n".join(texts) + "\n\n")  # blank lines are not texts
    page.tab.click("#compare-run")
    rows = page.tab.locator("#compare-matrix tr")
    expect(rows).to_have_count(len(texts) + 1)
    cells = [[float(c) for c in rows.nth(i + 1).locator("td").all_text_contents()] for i in range(len(texts))]
    vecs = httpx.post(f"{server}/v1/embeddings", json={"input": texts}, headers=_auth(), timeout=60).json()
    vecs = np.array([d["embedding"] for d in vecs["data"]])
    want = vecs @ vecs.T
    assert np.allclose(cells, want, atol=0.006) and all(cells[i][i] == 1.0 for i in range(len(texts)))
    i, j = max(((i, j) for i in range(4) for j in range(i + 1, 4)), key=lambda p: want[p])
    expect(page.tab.locator("#compare-pairs .pair").first).to_contain_text(
        f"Most similar: {i + 1} and {j + 1}"
    )
    expect(page.tab.locator("#compare-matrix th.text").nth(3)).to_have_text("4. " + XSS_TEXT[:39] + "\u2026")
    assert page.tab.locator("#compare-matrix img").count() == 0
    page.tab.screenshot(path=str(shots / "compare.png"))
    assert page.errors == []


def test_search_returns_the_expected_chunk(page, ui_index):
    target = next(c for c in ui_index.chunks.values() if c.source == "long.txt#2")
    page.tab_to("search")
    page.tab.fill("#search-query", target.text)
    page.tab.click("#search-run")
    first = page.tab.locator("#hits li").first
    expect(first.locator(".hit-head")).to_have_text("[1] long.txt \u00b7 chunk 2 \u00b7 cosine 1.000")
    expect(first.locator(".chunk-text")).to_have_text(target.text)
    expect(page.tab.locator("#hits li")).to_have_count(4)
    assert page.errors == []


def test_documents_with_markup_render_as_text(page, shots):
    page.tab_to("search")
    page.tab.fill("#search-query", XSS_TEXT)
    page.tab.fill("#ask-max-tokens", "6")
    page.tab.click("#ask-run")
    expect(page.tab.locator("#answer")).to_be_visible()
    first = page.tab.locator("#hits li").first
    expect(first.locator(".chunk-text")).to_have_text(XSS_TEXT)  # the markup, as text
    expect(first.locator(".hit-head b")).to_have_text("[1] " + XSS_FILE)
    assert page.tab.locator("#hits img, #hits script, #answer img, #answer script").count() == 0
    assert page.tab.evaluate("window.__xss") is None
    page.tab.screenshot(path=str(shots / "search.png"))
    # an answer's [n] links to source n; numbers that name no source, and markup, stay text
    page.tab.evaluate("renderAnswer('see [1] and [9] <b>x</b>', [{index: 1}])")
    links = page.tab.locator("#answer a.cite")
    expect(links).to_have_count(1)
    assert links.get_attribute("href") == "#source-1"
    expect(page.tab.locator("#answer")).to_have_text("see [1] and [9] <b>x</b>")
    links.click()
    expect(first).to_have_class("flash")
    assert page.errors == []


def test_a_wrong_key_shows_the_error(browser, server):
    p = Page(browser, server)
    try:
        expect(p.tab.locator("#key-form")).to_be_visible()  # asked before anything is called
        p.enter_key("wrong-key")
        expect(p.tab.locator("#error")).to_contain_text("401: incorrect API key")
        expect(p.tab.locator("#key-form")).to_be_visible()
        assert p.tab.evaluate("sessionStorage.getItem('unimae.apiKey')") is None
        p.ready()  # the right key then works
        expect(p.tab.locator("#error")).to_be_hidden()
    finally:
        p.context.close()


def test_body_limit_dropped_stream_and_server_gone_are_shown(page):
    page.tab_to("compare")
    page.tab.fill("#compare-input", "\n".join([f"{i} " + "the cat " * 400 for i in range(30)]))  # > 64 KiB
    page.tab.click("#compare-run")
    expect(page.tab.locator("#error")).to_contain_text("413: request body is larger than the server's limit")
    page.tab.fill("#compare-input", "one")
    page.tab.click("#compare-run")
    expect(page.tab.locator("#error")).to_contain_text("Compare takes 2 to 32 texts")

    piece = {"choices": [{"index": 0, "delta": {"content": "half an"}, "finish_reason": None}]}
    page.tab.route(  # the stream stops without its end: a dropped connection
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200, headers={"content-type": "text/event-stream"}, body=f"data: {json.dumps(piece)}\n\n"
        ),
    )
    page.tab_to("chat")
    page.tab.fill("#chat-input", "the dog")
    page.tab.click("#chat-send")
    expect(page.tab.locator("#error")).to_contain_text("The stream ended before the answer was complete")
    expect(page.tab.locator(".message.assistant .text")).to_have_text("half an")

    page.tab.route("**/v1/embeddings", lambda route: route.abort("connectionrefused"))  # as a stopped server
    page.tab_to("compare")
    page.tab.fill("#compare-input", "a cat\na dog")
    page.tab.click("#compare-run")
    expect(page.tab.locator("#error")).to_contain_text("The server cannot be reached")
