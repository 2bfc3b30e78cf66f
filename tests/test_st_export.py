"""sentence-transformers export: the real SentenceTransformer loads the folder and embeds like Encoder.encode."""

import json

import numpy as np
import pytest
from conftest import random_sentences

from unimae.encoding.encoder import Encoder
from unimae.errors import UserError
from unimae.export import export, export_sentence_transformers
from unimae.export.sentence_transformers import check_tokenizer, eos_post_processor

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
    ours = enc.encode(TEXTS, batch_size=5, normalize_embeddings=True)
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, batch_size=5)
    assert theirs.shape == ours.shape
    assert np.allclose(np.linalg.norm(theirs, axis=1), 1, atol=1e-5)  # the Normalize module
    assert _min_cosine(ours, theirs) >= 0.9999


def test_truncation_keeps_eos_like_unimae(exported):
    model, folder = exported
    enc = Encoder.from_pretrained(str(model), device="cpu", max_length=9)
    ours = enc.encode(TEXTS, normalize_embeddings=True)
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
    ours = Encoder.from_pretrained(str(model), device="cpu").encode(TEXTS, normalize_embeddings=True)
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


def test_export_formats_of_a_model_folder(tiny_llama, tmp_path):
    out = export(tiny_llama, tmp_path / "st", format="sentence-transformers")
    assert out == tmp_path / "st" and (out / "modules.json").exists()
    # causal-lm from a model folder (not a run): a plain folder that transformers loads, with unimae.json
    from transformers import AutoModelForCausalLM

    plain = export(tiny_llama, tmp_path / "plain", format="causal-lm")
    AutoModelForCausalLM.from_pretrained(plain)
    assert json.loads((plain / "unimae.json").read_text())["pooling"] == "eos"
    with pytest.raises(UserError, match="output"):  # only a run has a default output folder
        export(tiny_llama, format="sentence-transformers")


def test_export_rejects_unknown_format(tiny_llama, tmp_path):
    with pytest.raises(UserError, match="format"):
        export(tiny_llama, tmp_path / "x", format="tensorrt")


def test_only_eos_causal_models_export_to_sentence_transformers(tiny_llama, tmp_path):
    """lasttoken pooling is EOS pooling only; a mean-pooled or bidirectional model must not export silently."""
    base = Encoder.from_pretrained(str(tiny_llama), device="cpu")
    for kw in ({"pooling": "mean"}, {"attention": "bidirectional"}):
        enc = Encoder(base.model, base.tokenizer, device="cpu", **kw)
        with pytest.raises(UserError, match="EOS pooling"):
            export_sentence_transformers(enc, tmp_path / "st")
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_prompted_model_exports_its_prompt_in_the_tokenizer(arch, tiny_llama, tiny_gpt2, tmp_path):
    """A model read through a prompt (encode_prompt / a prompted run): the exported tokenizer writes
    ``[BOS]? prefix text suffix EOS`` and truncates only the text, so sentence-transformers embeds the same."""
    model = {"llama": tiny_llama, "gpt2": tiny_gpt2}[arch]
    prompt = 'This sentence : "{text}" means in one word:"'
    enc = Encoder.from_pretrained(str(model), device="cpu", prompt=prompt, max_length=24)
    export_sentence_transformers(enc, tmp_path / "st")
    check_tokenizer(tmp_path / "st", enc)  # also run by the export; truncation included
    sent = st.SentenceTransformer(str(tmp_path / "st"), device="cpu")
    ours = enc.encode(TEXTS, batch_size=5, normalize_embeddings=True)
    assert _min_cosine(ours, sent.encode(TEXTS, batch_size=5)) >= 0.9999
    plain = Encoder.from_pretrained(str(model), device="cpu", max_length=24).encode(
        TEXTS, normalize_embeddings=True
    )
    assert _min_cosine(ours, plain) < 0.999  # the prompt did change the vectors
    ids = sent.tokenize(["a " * 90])["input_ids"][0].tolist()
    assert len(ids) == 24 and ids[-1] == enc.eos_id  # prompt and EOS kept, the text cut
