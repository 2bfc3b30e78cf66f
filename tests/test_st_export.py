"""sentence-transformers export: the real SentenceTransformer loads the folder and embeds like Encoder.encode."""

import json

import numpy as np
import pytest
from conftest import random_sentences

from unimae.cli import main
from unimae.encoding.encoder import Encoder
from unimae.encoding.st_export import (
    check_tokenizer,
    eos_post_processor,
    export_model,
    export_sentence_transformers,
)

st = pytest.importorskip("sentence_transformers")

# mixed lengths: one word to ~60 words, so batches mix very short and long texts
TEXTS = random_sentences(24, seed=3, lo=1, hi=60) + ["cat", "the dog runs .", "a " * 90 + "river ."]


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def exported(request, tiny_llama, tiny_gpt2, tmp_path_factory):
    """(model folder, sentence-transformers folder) for both tiny architectures."""
    model = {"llama": tiny_llama, "gpt2": tiny_gpt2}[request.param]
    out = tmp_path_factory.mktemp(f"st_{request.param}") / "st"
    export_sentence_transformers(Encoder.from_pretrained(str(model), device="cpu"), out)
    return model, out


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_sentence_transformer_equals_encode(exported, padding_side):
    model, folder = exported
    enc = Encoder.from_pretrained(str(model), device="cpu", padding_side=padding_side)
    ours = enc.encode(TEXTS, batch_size=5, normalize=True)
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, batch_size=5)
    assert theirs.shape == ours.shape
    assert np.allclose(np.linalg.norm(theirs, axis=1), 1, atol=1e-5)  # the Normalize module
    assert _min_cosine(ours, theirs) >= 0.9999


def test_truncation_keeps_eos_like_unimae(exported):
    model, folder = exported
    enc = Encoder.from_pretrained(str(model), device="cpu", max_length=9)
    ours = enc.encode(TEXTS, normalize=True)
    sent = st.SentenceTransformer(str(folder), device="cpu")
    sent.max_seq_length = 9
    ids = sent.tokenize(TEXTS)["input_ids"]
    assert (
        ids.shape[1] == 9 and (ids[:, -1] == enc.eos_id).sum() > 0
    )  # long texts end in EOS after truncation
    assert _min_cosine(ours, sent.encode(TEXTS, batch_size=4)) >= 0.9999


def test_folder_is_plain_sentence_transformers(exported):
    model, folder = exported
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert all(m["type"].startswith("sentence_transformers.") for m in modules)
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "lasttoken"
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok_cfg["padding_side"] == "right" and "add_eos_token" not in tok_cfg
    check_tokenizer(folder, Encoder.from_pretrained(str(model), device="cpu"))  # raises on any id mismatch


def test_left_padding_inside_sentence_transformers(exported):
    """Why the export pads right: ST passes no position ids, so GPT-2 numbers left padding as positions."""
    model, folder = exported
    ours = Encoder.from_pretrained(str(model), device="cpu").encode(TEXTS, normalize=True)
    sent = st.SentenceTransformer(str(folder), device="cpu")
    sent.tokenizer.padding_side = "left"
    cos = _min_cosine(ours, sent.encode(TEXTS, batch_size=5))
    if "gpt2" in str(folder):
        assert cos < 0.99  # documented: left padding breaks learned positions without position ids
    else:
        assert cos >= 0.9999  # Llama derives positions that survive left padding


def test_post_processor_keeps_offset_steps():
    from tokenizers import processors

    seq = processors.Sequence(
        [processors.ByteLevel(trim_offsets=False), processors.TemplateProcessing(single="$A")]
    )
    out = json.loads(eos_post_processor(seq, ("</s>", 2), ("<s>", 1)).__getstate__())
    assert [p["type"] for p in out["processors"]] == ["ByteLevel", "TemplateProcessing"]
    single = out["processors"][1]["single"]
    assert [next(iter(x.values()))["id"] for x in single] == ["<s>", "A", "</s>"]


def test_cli_export_formats(tiny_llama, tmp_path, capsys):
    out = tmp_path / "st"
    assert main(["export", str(tiny_llama), "--format", "sentence-transformers", "-o", str(out)]) == 0
    assert (out / "modules.json").exists() and "SentenceTransformer" in capsys.readouterr().out
    # causal-lm from a model folder (not a run): a plain folder that transformers loads, with unimae.json
    from transformers import AutoModelForCausalLM

    plain = tmp_path / "plain"
    assert main(["export", str(tiny_llama), "--format", "causal-lm", "-o", str(plain)]) == 0
    AutoModelForCausalLM.from_pretrained(plain)
    assert json.loads((plain / "unimae.json").read_text())["pooling"] == "eos"
    assert main(["export", str(tiny_llama), "--format", "sentence-transformers"]) == 2  # -o is required


def test_export_model_rejects_unknown_format(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="format"):
        export_model(tiny_llama, tmp_path / "x", format="onnx")
