"""The large-model path on a tiny model: attention implementation, auto loss chunking, model dtype,
gradient checkpointing with LoRA."""

import json
import logging

import pytest
import torch
from conftest import random_sentences
from transformers import AutoModelForCausalLM

import unimae.training.build as build_mod
from unimae.errors import UserError
from unimae.llm import bidirectional_mask, last_hidden_states
from unimae.objective.losses import (
    CHUNK_WORKING_SET_BYTES,
    LOGIT_BUDGET_BYTES,
    auto_chunk_size,
    auto_logit_bytes,
    resolve_chunk_size,
)
from unimae.tokens import bos_id_if_added
from unimae.training.build import build
from unimae.training.config import ConfigError, load_config
from unimae.training.data import collate, tokenize_corpus
from unimae.training.loop import train


def _cfg(model, out="unused", **kw):
    base = dict(model=str(model), output_dir=str(out), steps=2, batch_size=4, max_length=16, warmup_steps=1)
    return load_config(None, {**base, **kw})


def _batch(setup, n=4):
    corpus = tokenize_corpus(random_sentences(n, seed=3), setup.tokenizer, 16, setup.eos_id)
    pad = setup.tokenizer.pad_token_id
    return collate(corpus, list(range(n)), pad, bos_id_if_added(setup.tokenizer) is not None)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_mntp_attention_is_bidirectional(tiny_model, impl):
    llm = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=impl).eval()
    assert llm.config._attn_implementation == impl
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    later = ids.clone()
    later[0, -1] = 10  # only the last token differs
    mask = torch.ones_like(ids)
    with torch.no_grad():
        bi = [last_hidden_states(llm, x, mask, bidirectional_mask(mask, torch.float32)) for x in (ids, later)]
        causal = [last_hidden_states(llm, x, mask) for x in (ids, later)]
    assert not torch.allclose(bi[0][0, 0], bi[1][0, 0])  # position 0 sees the later token
    assert torch.equal(causal[0][0, 0], causal[1][0, 0])  # the causal model does not


def test_mntp_build_switches_flash_attention_to_sdpa(tiny_llama, monkeypatch, caplog):
    real = build_mod.load_causal_lm

    def flash_loaded(*a, **k):
        llm, tok = real(*a, **k)
        llm.config._attn_implementation_internal = "flash_attention_2"  # as if loaded with it
        return llm, tok

    monkeypatch.setattr(build_mod, "load_causal_lm", flash_loaded)
    with caplog.at_level(logging.WARNING):
        setup = build(_cfg(tiny_llama, objective="mntp"))
    assert setup.model.hf.config._attn_implementation == "sdpa"
    assert "switched the model to sdpa" in caplog.text

    def cannot_switch(self, impl):
        raise ValueError("not supported")

    monkeypatch.setattr(type(setup.model.hf), "set_attn_implementation", cannot_switch)
    with pytest.raises(UserError, match="bidirectional attention"):
        build(_cfg(tiny_llama, objective="mntp"))


def test_bidirectional_encoder_switches_flash_attention_to_sdpa(tiny_llama, caplog):
    from transformers import AutoTokenizer

    from unimae.encoding.encoder import Encoder

    llm = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    llm.config._attn_implementation_internal = "flash_attention_2"  # as if loaded with it
    Encoder(llm, tok, pooling="eos", device="cpu")  # causal embedding: any attention will do
    assert llm.config._attn_implementation == "flash_attention_2"
    with caplog.at_level(logging.WARNING):
        enc = Encoder(llm, tok, pooling="mean", attention="bidirectional", device="cpu")
    assert enc.model.config._attn_implementation == "sdpa"
    assert "switched the model to sdpa" in caplog.text


def test_auto_loss_chunk_size():
    # 8k targets x 128k vocabulary: chunks whose fp32 logits stay within the budget
    chunk = auto_chunk_size(128256)
    assert chunk * 128256 * 4 <= LOGIT_BUDGET_BYTES < (chunk + 1) * 128256 * 4
    assert 8192 > chunk
    assert auto_chunk_size(49152) > 16 * 64  # the default model and batch are never chunked
    assert resolve_chunk_size(-1, 128256) == chunk
    assert resolve_chunk_size(0, 128256) == 0 and resolve_chunk_size(7, 128256) == 7
    # a bf16/fp16 model counts a chunk's whole working set: the default batch (577 targets) is chunked
    assert auto_logit_bytes("fp32") == 4 and auto_logit_bytes("bf16") == auto_logit_bytes("fp16") == 16
    bf16_chunk = resolve_chunk_size(-1, 49152, auto_logit_bytes("bf16"))
    assert bf16_chunk * 49152 * CHUNK_WORKING_SET_BYTES <= LOGIT_BUDGET_BYTES and 256 < bf16_chunk < 577


def test_build_resolves_auto_chunk_and_keeps_explicit(tiny_llama, caplog):
    assert load_config(None, {}).objective.loss_chunk_size == -1  # auto by default
    with caplog.at_level(logging.INFO, logger="unimae.training.build"):
        auto = build(_cfg(tiny_llama)).model
    vocab = auto.hf.get_output_embeddings().out_features
    assert auto.loss_chunk_size == auto_chunk_size(vocab) and "loss_chunk_size auto" in caplog.text
    assert build(_cfg(tiny_llama, loss_chunk_size=0)).model.loss_chunk_size == 0
    bf16 = build(_cfg(tiny_llama, lora=True, model_dtype="bf16")).model
    assert bf16.loss_chunk_size == auto_chunk_size(vocab, bytes_per_logit=CHUNK_WORKING_SET_BYTES)
    assert build(_cfg(tiny_llama, loss_chunk_size=5, objective="mntp")).model.loss_chunk_size == 5
    with pytest.raises(ConfigError, match="loss_chunk_size"):
        _cfg(tiny_llama, loss_chunk_size=-2)


@pytest.mark.parametrize("share", [True, False])
def test_model_dtype_bf16_keeps_trainable_parameters_fp32(tiny_llama, share):
    setup = build(_cfg(tiny_llama, model_dtype="bf16", lora=True, decoder_share_embeddings=share))
    model = setup.model
    trainable = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.dtype for n, p in model.llm.named_parameters() if not p.requires_grad}
    assert trainable and all(d == torch.float32 for d in trainable.values()), trainable
    assert any("lora" in n for n in trainable) and any(n.startswith("decoder.") for n in trainable)
    assert frozen and all(d == torch.bfloat16 for d in frozen.values()), frozen
    out = model(_batch(setup), step=0)
    out.loss.backward()  # a bf16 LLM, fp32 adapters and decoder: no dtype mismatch
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_model_dtype_needs_lora(tiny_llama):
    with pytest.raises(ConfigError, match="model_dtype=bf16 needs lora.enabled=true"):
        _cfg(tiny_llama, model_dtype="bf16")


def test_bf16_training_losses_close_to_fp32(tiny_llama, corpus_file, tmp_path):
    def losses(dtype):
        run = train(_cfg(tiny_llama, tmp_path / dtype, data=str(corpus_file), lora=True, model_dtype=dtype))
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    for a, b in zip(losses("fp32"), losses("bf16"), strict=True):
        assert a["mar_loss"] == pytest.approx(b["mar_loss"], rel=2e-2)
        assert a["mrc_loss"] == pytest.approx(b["mrc_loss"], rel=2e-2)


def test_gradient_checkpointing_with_lora_is_non_reentrant_and_exact(tiny_llama):
    grads = {}
    for gc in (False, True):
        setup = build(_cfg(tiny_llama, lora=True, lora_dropout=0.0, gradient_checkpointing=gc))
        model = setup.model.train()
        if gc:
            layers = [m for m in model.modules() if hasattr(m, "_gradient_checkpointing_func")]
            assert layers and all(
                m._gradient_checkpointing_func.keywords["use_reentrant"] is False for m in layers
            )
        model(_batch(setup), step=0).loss.backward()
        grads[gc] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert grads[True].keys() == grads[False].keys()
    lora = [n for n in grads[True] if "lora_B" in n]  # lora_A gets none while B starts at zero
    assert lora and all(grads[True][n].abs().sum() > 0 for n in lora)  # adapters get gradients
    for n, g in grads[False].items():
        assert torch.allclose(g, grads[True][n], atol=1e-6), n
