"""Prompts around the text (prompted UniMAE) and Token Prepending, on the tiny models."""

import shutil

import numpy as np
import pytest
import torch
from conftest import random_sentences

from unimae import Encoder
from unimae.encoding.pooling import (
    PROMPTEOL_PROMPT,
    PromptTokens,
    decoder_layers,
    layout,
    prepend_layers,
    token_prepending,
)
from unimae.spec import EmbeddingSpec, SpecError

TEXTS = random_sentences(7, seed=5, lo=1, hi=20)
PROMPT = "the king says {text} and the queen"  # words of the tiny vocabulary


def _tok(enc, s):
    return enc.tokenizer(s, add_special_tokens=False).input_ids


def test_prompt_wraps_the_text_before_the_eos(tiny_model):
    enc = Encoder.from_pretrained(str(tiny_model))
    head = [enc.bos_id] if enc.bos_id is not None else []
    text = "the cat runs to the river"
    item = layout("eos", enc.tokenizer, text, 64, enc.eos_id, enc.bos_id, prompt=PROMPT)
    want = head + _tok(enc, "the king says") + _tok(enc, text) + _tok(enc, "and the queen") + [enc.eos_id]
    assert item.ids == want and item.start == len(want) - 1
    last = layout("last", enc.tokenizer, text, 64, enc.eos_id, enc.bos_id, prompt=PROMPT)
    assert last.ids == want[:-1] and last.start == len(want) - 2


def test_truncation_keeps_prompt_and_eos(tiny_llama):
    enc = Encoder.from_pretrained(str(tiny_llama))
    item = layout("eos", enc.tokenizer, " ".join(["cat"] * 100), 16, enc.eos_id, enc.bos_id, prompt=PROMPT)
    suffix = _tok(enc, "and the queen")
    assert len(item.ids) == 16 and item.ids[-1] == enc.eos_id
    assert item.ids[-1 - len(suffix) : -1] == suffix
    with pytest.raises(ValueError, match="no room"):
        layout("eos", enc.tokenizer, "cat", 8, enc.eos_id, enc.bos_id, prompt=PROMPT)


def test_prompt_changes_the_vector_and_is_recorded(tiny_llama, tmp_path):
    plain = Encoder.from_pretrained(str(tiny_llama))
    prompted = Encoder(plain.model, plain.tokenizer, prompt=PROMPT)
    a, b = plain.encode(TEXTS), prompted.encode(TEXTS)
    assert not np.allclose(a, b, atol=1e-4)
    left = Encoder(plain.model, plain.tokenizer, prompt=PROMPT, padding_side="left")
    np.testing.assert_allclose(left.encode(TEXTS, batch_size=3), b, atol=1e-5)
    assert prompted.spec.prompt == PROMPT
    # an exported model's unimae.json brings its prompt back; another pooling drops it
    folder = tmp_path / "model"
    shutil.copytree(tiny_llama, folder)
    prompted.spec.save(folder)
    loaded = Encoder.from_pretrained(str(folder))
    assert loaded.prompt == PROMPT
    np.testing.assert_allclose(loaded.encode(TEXTS), b, atol=1e-5)
    assert Encoder.from_pretrained(str(folder), pooling="mean").prompt is None


@pytest.mark.parametrize("bad", ["no placeholder", "{text} twice {text}"])
def test_bad_prompts_are_refused(tiny_gpt2, bad):
    enc = Encoder.from_pretrained(str(tiny_gpt2))
    with pytest.raises(ValueError, match="exactly once"):
        Encoder(enc.model, enc.tokenizer, prompt=bad)
    with pytest.raises(SpecError, match="exactly once"):
        EmbeddingSpec(prompt=bad)
    with pytest.raises(ValueError, match="not 'mean'"):
        Encoder(enc.model, enc.tokenizer, pooling="mean", prompt=PROMPT)


def test_prompteol_layout_is_the_prompteol_prompt(tiny_gpt2):
    enc = Encoder.from_pretrained(str(tiny_gpt2))
    text = "a dog sees the moon"
    item = layout("prompteol", enc.tokenizer, text, 64, enc.eos_id, enc.bos_id)
    assert (
        item.ids
        == layout("last", enc.tokenizer, text, 64, enc.eos_id, enc.bos_id, prompt=PROMPTEOL_PROMPT).ids
    )
    tokens = PromptTokens.of(enc.tokenizer, PROMPTEOL_PROMPT)
    assert item.ids[: len(tokens.prefix)] == tokens.prefix


def test_prepend_layers_are_the_early_quarter():
    assert list(prepend_layers(2)) == [1]
    assert list(prepend_layers(30)) == list(range(1, 9))
    assert list(prepend_layers(32)) == list(range(1, 9))


@pytest.mark.parametrize("side", ["right", "left"])
def test_tokenprepend_replaces_the_placeholder_state(tiny_model, side):
    """Layer 1 receives the last token's layer-0 output at the placeholder; layer 0 is untouched."""
    enc = Encoder.from_pretrained(str(tiny_model), pooling="tokenprepend", padding_side=side)
    items = [layout("tokenprepend", enc.tokenizer, t, 64, enc.eos_id, enc.bos_id) for t in TEXTS[:3]]
    assert all(enc.tokenizer.convert_ids_to_tokens(it.ids[it.placeholder]) == "<unk>" for it in items)
    from unimae.tokens import pad_batch

    ids, mask = pad_batch([it.ids for it in items], enc.pad_id, side=side)
    shift = torch.tensor([ids.shape[1] - len(it.ids) if side == "left" else 0 for it in items])
    ph = torch.tensor([it.placeholder for it in items]) + shift
    last = torch.tensor([it.end - 1 for it in items]) + shift
    layers = decoder_layers(enc.model)
    seen = {}

    def spy(i):
        def hook(module, args, kwargs, output):
            seen[i] = (args[0] if args else kwargs["hidden_states"]).detach().clone()
            seen[f"out{i}"] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return hook

    handles = [layer.register_forward_hook(spy(i), with_kwargs=True) for i, layer in enumerate(layers)]
    rows = torch.arange(len(items))
    with torch.no_grad(), token_prepending(enc.model, ph, last):
        enc.model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    torch.testing.assert_close(seen[1][rows, ph], seen["out0"][rows, last])
    assert not torch.allclose(seen[0][rows, ph], seen["out0"][rows, last])
    assert not any(layer._forward_pre_hooks for layer in layers)  # hooks removed on exit


def test_tokenprepend_differs_from_prompteol(tiny_llama):
    tp = Encoder.from_pretrained(str(tiny_llama), pooling="tokenprepend")
    eol = Encoder(tp.model, tp.tokenizer, pooling="prompteol")
    assert not np.allclose(tp.encode(TEXTS), eol.encode(TEXTS), atol=1e-4)


def test_cli_encode_with_prompt(tiny_gpt2, tmp_path):
    from unimae.cli import main

    out = tmp_path / "v"
    assert main(["encode", str(tiny_gpt2), "the cat", "-o", str(out), "--prompt", PROMPT]) == 0
    enc = Encoder.from_pretrained(str(tiny_gpt2), prompt=PROMPT)
    np.testing.assert_allclose(
        np.load(tmp_path / "v.npy")[0], enc.encode("the cat", normalize_embeddings=True), atol=1e-5
    )
    assert main(["encode", str(tiny_gpt2), "the cat", "-o", str(out), "--prompt", "no slot"]) != 0
