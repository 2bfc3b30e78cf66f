"""ONNX Runtime and OpenVINO backends: the exported graphs give PyTorch's vectors, and load without unimae.

Tiny random models (Llama with BOS, GPT-2 without); every export is built once per module. The int8 check on
the real default model is a slow test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_gpt2, make_tiny_llama, random_sentences

from unimae.encoding.backends import BACKEND_FILE, exported_backends
from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.export import export

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

TEXTS = random_sentences(11, seed=3, lo=1, hi=60)  # 2 to ~70 tokens, so batches mix lengths


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``exports[arch]``: a tiny model's folder; ``exports[arch, format]``: its export, built on first use."""
    root = tmp_path_factory.mktemp("backends")
    makers = {"llama": make_tiny_llama, "gpt2": make_tiny_gpt2}

    class Exports(dict):
        def __missing__(self, key):
            if isinstance(key, str):
                self[key] = makers[key](root / key)
            else:
                arch, fmt = key
                self[key] = export(self[arch], root / f"{arch}-{fmt}", format=fmt)
            return self[key]

    return Exports()


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(-1).min())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_fp32_graph_equals_torch(exports, arch, fmt, side):
    torch_vecs = Encoder.from_pretrained(str(exports[arch]), device="cpu").encode(
        TEXTS, batch_size=4, normalize_embeddings=True
    )
    enc = Encoder.from_pretrained(str(exports[arch, fmt]), device="cpu")  # the folder's own graph
    assert enc.backend == fmt and enc.runtime is not None
    enc.padding_side = side
    vecs = enc.encode(TEXTS, batch_size=4, normalize_embeddings=True)
    assert np.isfinite(vecs).all()
    assert _min_cos(vecs, torch_vecs) >= 0.9999


@pytest.mark.parametrize("fmt", ["onnx-int8", "openvino-int8"])
def test_int8_graph_is_quantized_and_close(exports, fmt):
    enc = Encoder.from_pretrained(str(exports["llama", fmt]), device="cpu")
    assert enc.backend == fmt
    ref = Encoder.from_pretrained(str(exports["llama"]), device="cpu")
    a = enc.encode(TEXTS, normalize_embeddings=True)
    assert _min_cos(a, ref.encode(TEXTS, normalize_embeddings=True)) >= 0.99
    folder = exports["llama", fmt]
    if fmt == "onnx-int8":
        import onnx

        nodes = onnx.load(str(folder / "onnx" / "model.onnx")).graph.node
        nbits = [n for n in nodes if n.op_type == "MatMulNBits"]  # int8 MatMuls (tiny: the embedding
        # table, left fp32, outweighs them, so the file is not smaller here); the recipe: test_smoothquant
        assert len(nbits) == 4 and all("down_proj" in n.name or "v_proj" in n.name for n in nbits)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nbits[0].attribute}
        assert attrs["bits"] == 8 and attrs["accuracy_level"] == 4  # int8 weights, int8 compute
        dynamic = sum(n.op_type in ("DynamicQuantizeMatMul", "MatMulInteger") for n in nodes)
        assert dynamic == 10  # q, k, o, gate, up: int8 with one activation scale per tensor
    else:
        fp32 = (exports["llama", "openvino"] / "openvino" / "openvino_model.bin").stat().st_size
        assert (folder / "openvino" / "openvino_model.bin").stat().st_size < fp32 / 2


def test_openvino_settings(exports):
    """fp32 OpenVINO stays at f32 (parity); int8 trades it for speed: bf16 where the CPU has it, activations
    quantized per 128 channels."""
    from unimae.encoding.backends import OPENVINO_INT8_GROUP_SIZE, load_body

    fp32 = load_body(exports["llama", "openvino"], "openvino")
    assert fp32.config["INFERENCE_PRECISION_HINT"] == "f32"
    assert "DYNAMIC_QUANTIZATION_GROUP_SIZE" not in fp32.config
    int8 = load_body(exports["llama", "openvino-int8"], "openvino-int8")
    assert int8.config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == str(OPENVINO_INT8_GROUP_SIZE)
    assert int8.config["INFERENCE_PRECISION_HINT"] in ("bf16", "f32")
    assert str(int8.compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")) == str(OPENVINO_INT8_GROUP_SIZE)


def test_openvino_streams_split_a_batch_with_the_same_states(exports):
    """With two threads a batch of 8 runs as two parts on two single-thread streams; the states match the
    one-stream run (mixed lengths, left padding), and small batches stay on the one-stream model."""
    from unimae.encoding.backends import OPENVINO_STREAM_MIN_ROWS, load_body, split_rows

    assert split_rows(9, 2) == [slice(0, 4), slice(4, 9)] and split_rows(1, 2) == [slice(0, 1)]
    one, two = (load_body(exports["llama", "openvino"], "openvino", threads=t) for t in (1, 2))
    lengths = [3, 9, 5, 9, 2, 7, 8, 4]
    assert len(lengths) >= OPENVINO_STREAM_MIN_ROWS * 2
    mask = torch.tensor([[0] * (9 - n) + [1] * n for n in lengths])
    ids = torch.randint(3, 100, mask.shape) * mask
    expected = one(ids, mask)
    np.testing.assert_allclose(two(ids, mask)[mask.bool()], expected[mask.bool()], atol=1e-4)
    assert two._queue is not None  # the streams ran
    np.testing.assert_allclose(
        two(ids[:2], mask[:2])[mask[:2].bool()], expected[:2][mask[:2].bool()], atol=1e-4
    )


def test_graph_has_no_pooling_or_argmax(exports):
    """The trap of exports that put last-token pooling in the graph: ArgMax that ONNX Runtime rejects."""
    import onnx

    model = onnx.load(str(exports["gpt2", "onnx"] / "onnx" / "model.onnx"))
    assert "ArgMax" not in {n.op_type for n in model.graph.node}
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["last_hidden_state"]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_left_padding_leaves_no_nan(exports, fmt):
    """Fully masked padding rows must not turn into NaN that leaks into real tokens (seen in OpenVINO)."""
    from unimae.encoding.backends import load_body

    body = load_body(exports["llama", fmt], fmt)
    ids = torch.tensor([[1, 5, 6, 7, 8, 2], [0, 0, 0, 1, 5, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
    hidden = body(ids, mask)
    assert torch.isfinite(hidden[mask.bool()]).all()


def test_st_folder_layout_and_onnx_pipeline_without_unimae(exports):
    """What sentence-transformers' ``backend="onnx"`` runs: its tokenizer (EOS appended, right padding), the
    graph in ONNX Runtime, then its own lasttoken Pooling and Normalize modules from the folder."""
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    folder = exports["llama", "onnx"]
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "lasttoken"
    st = SentenceTransformer(str(folder), device="cpu")  # the modules as sentence-transformers loads them
    features = st.tokenize(TEXTS)
    session = ort.InferenceSession(str(folder / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {k: features[k].numpy() for k in ("input_ids", "attention_mask")}
    features["token_embeddings"] = torch.from_numpy(session.run(None, feed)[0])
    for module in (st[1], st[2]):
        features = module(features)
    vecs = features["sentence_embedding"].numpy()
    ref = Encoder.from_pretrained(str(exports["llama"]), device="cpu").encode(
        TEXTS, normalize_embeddings=True
    )
    assert _min_cos(vecs, ref) >= 0.9999


def test_backend_records_and_spec(exports):
    for fmt in ("onnx", "onnx-int8", "openvino", "openvino-int8"):
        folder = exports["llama", fmt]
        assert exported_backends(folder) == [fmt]
        assert json.loads((folder / "unimae.json").read_text())["pooling"] == "eos"
        sub = "onnx" if fmt.startswith("onnx") else "openvino"
        assert json.loads((folder / sub / BACKEND_FILE).read_text())["backend"] == fmt


def test_backend_built_into_cache_once(tiny_llama, monkeypatch):
    """A model without a graph: the graph is built on first use into the cache, then reused."""
    import unimae.encoding.backend_build as build

    calls = []
    real = build.build_graph
    monkeypatch.setattr(build, "build_graph", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    a = Encoder.from_pretrained(str(tiny_llama), device="cpu", backend="onnx")
    b = Encoder.from_pretrained(str(tiny_llama), device="cpu", backend="onnx")
    assert calls == ["onnx"] and a.backend == b.backend == "onnx"
    ref = Encoder.from_pretrained(str(tiny_llama), device="cpu")
    assert ref.backend == "torch" and ref.runtime is None
    assert (
        _min_cos(a.encode(TEXTS, normalize_embeddings=True), ref.encode(TEXTS, normalize_embeddings=True))
        > 0.9999
    )


def test_bad_backend_is_a_user_error(tiny_llama):
    with pytest.raises(UserError, match="unknown backend"):
        Encoder.from_pretrained(str(tiny_llama), device="cpu", backend="tensorrt")


def test_tokenprepend_refuses_a_graph_backend(exports):
    """Its layer hooks cannot run inside an ONNX/OpenVINO graph: refused, never silently plain."""
    with pytest.raises(UserError, match="tokenprepend"):
        Encoder.from_pretrained(str(exports["llama", "onnx"]), pooling="tokenprepend", device="cpu")


def test_other_poolings_run_on_a_backend(exports):
    """Pooling stays outside the graph: mean pooling on the ONNX graph equals mean pooling in torch."""
    enc = Encoder.from_pretrained(str(exports["llama", "onnx"]), pooling="mean", device="cpu")
    ref = Encoder.from_pretrained(str(exports["llama"]), pooling="mean", device="cpu")
    assert (
        _min_cos(enc.encode(TEXTS, normalize_embeddings=True), ref.encode(TEXTS, normalize_embeddings=True))
        > 0.9999
    )


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx-int8", "openvino-int8"])
def test_int8_on_the_default_model(tmp_path, fmt):
    """int8 graphs of the real default model keep cosine >= 0.99 with PyTorch fp32 on mixed texts."""
    from unimae.data.wiki import wiki_sentences

    model = "runs/default/model" if Path("runs/default/model/config.json").exists() else "smollm2-135m"
    texts = wiki_sentences()[:64] + ["Short one.", "A dog."]
    ref = Encoder.from_pretrained(model, device="cpu").encode(texts, normalize_embeddings=True)
    out = export(model, tmp_path / fmt, format=fmt)
    vecs = Encoder.from_pretrained(str(out), device="cpu").encode(texts, normalize_embeddings=True)
    assert _min_cos(vecs, ref) >= 0.99


def test_server_tokenizes_each_request_once_and_serves_a_backend(exports, monkeypatch):
    """One embeddings request: one layout per text (it was two), vectors of the ONNX graph, usage from them."""
    from fastapi.testclient import TestClient

    import unimae.encoding.encoder as encoder_module
    from unimae.serving.app import ServerConfig, create_app

    enc = Encoder.from_pretrained(str(exports["llama", "onnx"]), device="cpu")
    calls = []
    real = encoder_module.layout
    monkeypatch.setattr(encoder_module, "layout", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    texts = TEXTS[:3]
    with TestClient(create_app(enc, ServerConfig("m"))) as c:
        r = c.post("/v1/embeddings", json={"input": texts, "model": "m"})
        assert r.status_code == 200, r.text
        assert c.get("/health").json()["embedding_backend"] == "onnx"
    assert sorted(calls) == sorted(texts)
    got = np.array([d["embedding"] for d in r.json()["data"]])
    monkeypatch.setattr(encoder_module, "layout", real)
    assert np.allclose(got, enc.encode(texts, normalize_embeddings=True), atol=1e-5)
    assert r.json()["usage"]["prompt_tokens"] == sum(len(it.ids) for it in enc.tokenize(texts))


def test_server_rejects_a_long_text_naming_it(tiny_llama):
    from fastapi.testclient import TestClient

    from unimae.serving.app import ServerConfig, create_app

    enc = Encoder.from_pretrained(str(tiny_llama), device="cpu", max_length=8)
    with TestClient(create_app(enc, ServerConfig("m", truncate=False))) as c:
        r = c.post("/v1/embeddings", json={"input": ["a dog", "the cat " * 10], "model": "m"})
    assert r.status_code == 400 and "input item 1" in r.json()["error"]["message"]


def test_rag_index_records_its_backend_and_cli_uses_it(exports, tmp_path, capsys):
    """`rag index --backend onnx` embeds with the graph; `rag search` then uses the index's backend."""
    from unimae.cli import main
    from unimae.rag import RagIndex

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(" ".join(TEXTS))
    model, index = str(exports["llama"]), str(tmp_path / "index")
    assert main(["rag", "index", str(docs), "--model", model, "--index", index, "--backend", "onnx"]) == 0
    assert RagIndex.open(index).manifest.backend == "onnx"
    assert main(["rag", "search", TEXTS[0], "--index", index, "-k", "1"]) == 0
    assert "a.txt" in capsys.readouterr().out
    RagIndex.open(index).check_model(Encoder.from_pretrained(model, device="cpu"))  # torch: same vectors
