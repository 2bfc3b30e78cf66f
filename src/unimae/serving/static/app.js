// unimae's page: chat, compare and search against this server's own JSON routes.
// Rules: every text from the model, a document or the user is put in the page with textContent (never
// as HTML); the API key lives in this tab's sessionStorage only; every failed request shows its error.
"use strict";

const KEY_STORE = "unimae.apiKey";
const COMPARE_MAX = 32; // most texts in one comparison (also capped by the server's --max-inputs)
const $ = (id) => document.getElementById(id);

const state = { info: null, chat: [], chatAbort: null, askAbort: null };

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status; // 0: no HTTP answer (server gone, connection dropped) or a check in the page
  }
}

// --- requests -------------------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

function requestHeaders(hasBody) {
  const headers = {};
  if (hasBody) headers["Content-Type"] = "application/json";
  if (apiKey()) headers.Authorization = "Bearer " + apiKey();
  return headers;
}

// fetch one route of this server; an HTTP error becomes an ApiError with the server's message
async function api(path, body, signal) {
  const options = { method: body === undefined ? "GET" : "POST", headers: requestHeaders(body !== undefined), signal, cache: "no-store" };
  if (body !== undefined) options.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The server cannot be reached (it stopped, or the network is down): " + err.message);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  let message = response.statusText || "error";
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (err) {
    // not an OpenAI error body: keep the status text
  }
  const hints = {
    401: " Enter the server's API key.",
    413: " Send fewer or shorter texts.",
  };
  return new ApiError(response.status, `${response.status}: ${message}${hints[response.status] || ""}`);
}

// read server-sent events of a chat completion; onText gets each piece; resolves to the finish reason
async function readStream(response, onText) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let finish = null;
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "The connection dropped while the answer was streaming: " + err.message);
    }
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return finish;
        const obj = JSON.parse(data);
        if (obj.error) throw new ApiError(500, "The server failed while generating: " + obj.error.message);
        for (const choice of obj.choices || []) {
          if (choice.delta && choice.delta.content) onText(choice.delta.content);
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
  }
  throw new ApiError(0, "The stream ended before the answer was complete (the connection dropped or the server stopped).");
}

// --- small page helpers ---------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(err) {
  $("error-text").textContent = err instanceof Error ? err.message : String(err);
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

function numberOf(id) {
  const value = Number($(id).value);
  return Number.isFinite(value) && $(id).value !== "" ? value : undefined;
}

function short(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "\u2026" : text;
}

// --- key and model card ---------------------------------------------------------------------------

function showKeyForm(show) {
  $("key-form").hidden = !show;
  if (show) $("key-input").focus();
}

async function loadInfo() {
  try {
    state.info = await (await api("/v1/info")).json();
  } catch (err) {
    if (err.status === 401) {
      sessionStorage.removeItem(KEY_STORE);
      showKeyForm(true);
    }
    showError(err);
    return;
  }
  clearError();
  showKeyForm(false);
  $("key-forget").hidden = !apiKey();
  renderCard(state.info);
  document.body.dataset.ready = "1";
}

function renderCard(info) {
  const m = info.model;
  const index = info.index ? `${info.index.name}: ${info.index.chunks} chunks from ${info.index.files} files` : "none";
  const rows = [
    ["model", m.id],
    ["pooling", m.pooling],
    ["prompt", m.prompt === null ? "none (the text alone)" : m.prompt],
    ["dimensions", String(m.embedding_dimensions)],
    ["backend", `${m.backend} on ${m.device}`],
    ["context", `${m.context_length === null ? "unbounded" : m.context_length} tokens (embeds ${m.max_input_tokens})`],
    ["chat template", m.chat_template ? "yes" : "no"],
    ["index", index],
  ];
  const card = $("card");
  card.replaceChildren();
  for (const [name, value] of rows) {
    const group = el("div");
    group.append(el("dt", "", name), el("dd", "", value));
    card.append(group);
  }
  $("model-name").textContent = m.id;
  document.title = `unimae: ${m.id}`;
  $("compare-max").textContent = String(compareMax());
  $("search-missing").hidden = Boolean(info.index);
  $("search-form").hidden = !info.index;
}

function compareMax() {
  return Math.min(COMPARE_MAX, state.info ? state.info.limits.max_inputs : COMPARE_MAX);
}

// --- chat -----------------------------------------------------------------------------------------

function addMessage(role, text) {
  const box = el("div", `message ${role}`);
  const body = el("span", "text", text);
  box.append(body);
  $("chat-log").append(box);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return { box, body };
}

function setNote(message, text) {
  message.box.append(el("span", "note", text));
}

function chatBusy(busy) {
  $("chat-send").disabled = busy;
  $("chat-stop").disabled = !busy;
  $("chat-status").textContent = busy ? "generating..." : "";
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("chat-input").value;
  if (!text.trim() || state.chatAbort) return;
  clearError();
  $("chat-input").value = "";
  state.chat.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  const controller = new AbortController();
  state.chatAbort = controller;
  chatBusy(true);
  let content = "";
  const body = { messages: state.chat, stream: true, max_tokens: numberOf("chat-max-tokens"), temperature: numberOf("chat-temperature") };
  try {
    const response = await api("/v1/chat/completions", body, controller.signal);
    const finish = await readStream(response, (piece) => {
      content += piece;
      reply.body.textContent = content;
      $("chat-log").scrollTop = $("chat-log").scrollHeight;
    });
    if (finish === "length") setNote(reply, "(cut at max tokens)");
  } catch (err) {
    if (err.name === "AbortError") setNote(reply, "(stopped)");
    else {
      setNote(reply, "(failed)");
      showError(err);
    }
  } finally {
    if (content) state.chat.push({ role: "assistant", content });
    else state.chat.pop(); // nothing came back: the question can be asked again
    state.chatAbort = null;
    chatBusy(false);
  }
}

function chatKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
}

function clearChat() {
  if (state.chatAbort) state.chatAbort.abort();
  state.chat = [];
  $("chat-log").replaceChildren();
}

// --- compare --------------------------------------------------------------------------------------

// cosine of every pair of rows of vecs (n x d arrays): n x n
function cosineMatrix(vecs) {
  const norms = vecs.map((v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0)));
  return vecs.map((a, i) => vecs.map((b, j) => a.reduce((s, x, k) => s + x * b[k], 0) / (norms[i] * norms[j])));
}

// the off-diagonal pairs with the largest and the smallest cosine: [i, j, cosine] each
function extremePairs(sims) {
  let most = null;
  let least = null;
  for (let i = 0; i < sims.length; i++) {
    for (let j = i + 1; j < sims.length; j++) {
      if (!most || sims[i][j] > most[2]) most = [i, j, sims[i][j]];
      if (!least || sims[i][j] < least[2]) least = [i, j, sims[i][j]];
    }
  }
  return { most, least };
}

// colour of a cosine: light at lo, dark at hi (the range of the pairs of this table: a model whose
// cosines all lie in 0.95..0.99 still shows which pairs are closer)
function heat(cell, value, lo, hi) {
  const t = hi > lo ? Math.max(0, Math.min(1, (value - lo) / (hi - lo))) : 1;
  const lightness = 96 - 58 * t;
  cell.style.backgroundColor = `hsl(218, 80%, ${lightness}%)`;
  cell.style.color = lightness < 62 ? "#fff" : "#1f2933";
}

function renderMatrix(texts, sims) {
  const { most, least } = extremePairs(sims);
  const table = $("compare-matrix");
  table.replaceChildren();
  const head = el("tr");
  head.append(el("th", "", ""));
  texts.forEach((_, j) => head.append(el("th", "", String(j + 1))));
  table.append(head);
  texts.forEach((text, i) => {
    const row = el("tr");
    const label = el("th", "text", `${i + 1}. ${short(text, 40)}`);
    label.title = text;
    row.append(label);
    sims[i].forEach((value, j) => {
      const cell = el("td", i === j ? "diagonal" : "", value.toFixed(2));
      cell.title = `${i + 1} and ${j + 1}: cosine ${value.toFixed(4)}`;
      if (i !== j) heat(cell, value, least[2], most[2]);
      row.append(cell);
    });
    table.append(row);
  });
  $("compare-scale").textContent =
    `Colours run from the lowest cosine between two different texts (${least[2].toFixed(2)}, light) to the highest (${most[2].toFixed(2)}, dark).`;
}

function renderPairs(texts, sims) {
  const { most, least } = extremePairs(sims);
  const box = $("compare-pairs");
  box.replaceChildren();
  for (const [name, pair] of [["Most similar", most], ["Least similar", least]]) {
    const p = el("p", "pair");
    p.append(el("b", "", `${name}: ${pair[0] + 1} and ${pair[1] + 1} (cosine ${pair[2].toFixed(2)}) `));
    p.append(el("span", "quote", `\u201c${short(texts[pair[0]], 80)}\u201d / \u201c${short(texts[pair[1]], 80)}\u201d`));
    box.append(p);
  }
}

async function runCompare() {
  clearError();
  const texts = $("compare-input").value.split("\n").map((t) => t.trim()).filter((t) => t);
  const max = compareMax();
  if (texts.length < 2 || texts.length > max) {
    showError(new ApiError(0, `Compare takes 2 to ${max} texts, one per line; this is ${texts.length}.`));
    return;
  }
  $("compare-run").disabled = true;
  $("compare-status").textContent = "embedding...";
  try {
    const body = await (await api("/v1/embeddings", { input: texts, encoding_format: "float" })).json();
    const vecs = body.data.slice().sort((a, b) => a.index - b.index).map((d) => d.embedding);
    const sims = cosineMatrix(vecs);
    renderMatrix(texts, sims);
    renderPairs(texts, sims);
  } catch (err) {
    showError(err);
  } finally {
    $("compare-run").disabled = false;
    $("compare-status").textContent = "";
  }
}

// --- search and ask -------------------------------------------------------------------------------

function renderHits(sources) {
  const list = $("hits");
  list.replaceChildren();
  for (const s of sources) {
    const item = el("li");
    item.id = `source-${s.index}`;
    const head = el("div", "hit-head");
    head.append(el("b", "", `[${s.index}] ${s.document}`), el("span", "", ` \u00b7 chunk ${s.chunk} \u00b7 cosine ${s.score.toFixed(3)}`));
    item.append(head, el("pre", "chunk-text", s.text));
    list.append(item);
  }
}

// the answer as text, each [n] that names a source a link to it
function renderAnswer(answer, sources) {
  const box = $("answer");
  box.replaceChildren();
  let last = 0;
  for (const match of answer.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    if (n < 1 || n > sources.length) continue;
    box.append(document.createTextNode(answer.slice(last, match.index)));
    const link = el("a", "cite", `[${n}]`);
    link.href = `#source-${n}`;
    link.addEventListener("click", () => flash(`source-${n}`));
    box.append(link);
    last = match.index + match[0].length;
  }
  box.append(document.createTextNode(answer.slice(last)));
  box.hidden = false;
}

function flash(id) {
  for (const item of $("hits").children) item.classList.toggle("flash", item.id === id);
}

function searchBusy(busy, what) {
  $("search-run").disabled = busy;
  $("ask-run").disabled = busy;
  $("ask-stop").disabled = !(busy && state.askAbort);
  $("search-status").textContent = busy ? what : "";
}

async function runSearch(event) {
  event.preventDefault();
  const query = $("search-query").value;
  if (!query.trim()) return;
  clearError();
  searchBusy(true, "searching...");
  try {
    const body = await (await api("/v1/rag/search", { query, top_k: numberOf("search-k") })).json();
    $("answer").hidden = true;
    renderHits(body.sources);
  } catch (err) {
    showError(err);
  } finally {
    searchBusy(false);
  }
}

async function runAsk() {
  const query = $("search-query").value;
  if (!query.trim()) return;
  clearError();
  state.askAbort = new AbortController();
  searchBusy(true, "retrieving and answering...");
  let stopped = false;
  try {
    const request = { query, top_k: numberOf("search-k"), max_tokens: numberOf("ask-max-tokens") };
    const body = await (await api("/v1/rag", request, state.askAbort.signal)).json();
    renderHits(body.sources);
    renderAnswer(body.answer, body.sources);
  } catch (err) {
    if (err.name === "AbortError") stopped = true;
    else showError(err);
  } finally {
    state.askAbort = null;
    searchBusy(false);
    if (stopped) $("search-status").textContent = "stopped (no answer)";
  }
}

// --- start ----------------------------------------------------------------------------------------

function selectTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.dataset.panel === name;
    tab.setAttribute("aria-selected", String(selected));
    $(tab.dataset.panel).hidden = !selected;
  }
}

function wire() {
  for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => selectTab(tab.dataset.panel));
  $("error-close").addEventListener("click", clearError);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("key-input").value.trim());
    $("key-input").value = "";
    loadInfo();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    $("key-forget").hidden = true;
    showKeyForm(true);
  });
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", chatKey);
  $("chat-stop").addEventListener("click", () => state.chatAbort && state.chatAbort.abort());
  $("chat-clear").addEventListener("click", clearChat);
  $("compare-run").addEventListener("click", runCompare);
  $("search-form").addEventListener("submit", runSearch);
  $("ask-run").addEventListener("click", runAsk);
  $("ask-stop").addEventListener("click", () => state.askAbort && state.askAbort.abort());
}

async function start() {
  wire();
  let health;
  try {
    health = await (await api("/health")).json();
  } catch (err) {
    showError(err);
    return;
  }
  if (health.api_key_required && !apiKey()) {
    showKeyForm(true);
    return;
  }
  await loadInfo();
}

start();
