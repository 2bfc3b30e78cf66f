"""The low-memory LoRA path (training/lora.py): same numbers as peft's, correct dropout, exportable."""

import pytest
import torch
from conftest import random_sentences
from torch import nn
from transformers import AutoModelForCausalLM

from unimae.tokens import bos_id_if_added
from unimae.training.build import build
from unimae.training.checkpoint import find_checkpoint, load_model_state
from unimae.training.config import load_config
from unimae.training.data import collate, tokenize_corpus
from unimae.training.loop import train
from unimae.training.lora import LoraDown, use_low_memory_lora
from unimae.training.trained import load_trained


def _cfg(model, out="unused", **kw):
    base = dict(model=str(model), output_dir=str(out), steps=2, batch_size=4, max_length=16, warmup_steps=1)
    return load_config(None, {**base, "lora": True, **kw})


def _loss_and_grads(setup, low_memory: bool, seed: int = 0):
    model = setup.model.train()
    if low_memory:
        assert use_low_memory_lora(model) > 0
    corpus = tokenize_corpus(random_sentences(4, seed=3), setup.tokenizer, 16, setup.eos_id)
    batch = collate(
        corpus, list(range(4)), setup.tokenizer.pad_token_id, bos_id_if_added(setup.tokenizer) is not None
    )
    torch.manual_seed(seed)  # the dropout masks' stream
    out = model(batch, step=0)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return out.loss.detach(), grads


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_low_memory_lora_equals_peft(tiny_llama, dtype, dropout):
    """The same loss and gradients as peft's own path (dropout included: the same CPU draws)."""
    cfg = _cfg(tiny_llama, model_dtype="fp32", lora_dropout=dropout)  # peft's path, then swapped by hand
    ref_loss, ref = _loss_and_grads(_with_dtype(build(cfg), dtype), low_memory=False)
    loss, got = _loss_and_grads(_with_dtype(build(cfg), dtype), low_memory=True)
    assert torch.equal(loss, ref_loss)
    assert got.keys() == ref.keys() and any("lora_A" in n for n in got)
    for n, g in ref.items():
        torch.testing.assert_close(got[n], g, rtol=0, atol=0, msg=n)


def _with_dtype(setup, dtype):
    """The setup with its frozen LLM weights in ``dtype`` (trainable ones stay fp32, as build does)."""
    if dtype == "bf16":
        for p in setup.model.llm.parameters():
            if not p.requires_grad:
                p.data = p.data.bfloat16()
    return setup


def test_build_uses_low_memory_lora_only_below_fp32(tiny_llama):
    def downs(model):
        return [m for m in model.modules() if isinstance(m, LoraDown)]

    assert not downs(build(_cfg(tiny_llama)).model)  # fp32: peft's path, golden losses unchanged
    bf16 = build(_cfg(tiny_llama, model_dtype="bf16", lora_dropout=0.05)).model
    layers = [m for m in bf16.modules() if hasattr(m, "lora_dropout")]
    assert layers and len(downs(bf16)) == len(layers)
    assert all(isinstance(m.lora_dropout["default"], nn.Identity) for m in layers)
    assert all(d.p == 0.05 and d.weight.dtype == torch.float32 for d in downs(bf16))
    names = {n for n, _ in bf16.named_parameters()}
    assert any(n.endswith("lora_A.default.weight") for n in names)  # peft's names, for checkpoints


def test_low_memory_dropout_is_inverted_and_drawn_per_call():
    torch.manual_seed(0)
    a = LoraDown(nn.Linear(256, 1, bias=False), p=0.25).train()
    nn.init.ones_(a.weight)
    x = torch.ones(64, 256, dtype=torch.bfloat16, requires_grad=True)
    y1, y2 = a(x), a(x)  # (64, 1): 4/3 x (kept inputs of each row)
    assert y1.dtype == torch.float32 and not torch.equal(y1, y2)  # a fresh mask every call
    kept = y1.detach().squeeze(-1) * 0.75  # the count of kept values per row, exactly
    assert torch.allclose(kept, kept.round()) and kept.max() < 256
    assert (kept.mean() / 256).item() == pytest.approx(0.75, abs=0.02)  # keep 1 - p: E[output] = input
    y1.sum().backward()
    g = x.grad  # d/dx: 1/(1-p) where kept, 0 where dropped, with the forward's mask
    assert x.grad.dtype == torch.bfloat16
    assert set(g.unique().tolist()) == {0.0, torch.tensor(4 / 3).bfloat16().item()}
    assert (g != 0).sum(-1).float().tolist() == kept.round().tolist()
    a.eval()
    assert torch.equal(a(x), torch.full((64, 1), 256.0))  # no dropout in eval


def test_bf16_lora_run_exports_merged_weights(tiny_llama, corpus_file, tmp_path):
    """2 bf16 LoRA steps on the low-memory path, then load_trained: merged W = base + B @ A x scale."""
    cfg = _cfg(tiny_llama, tmp_path / "run", data=str(corpus_file), model_dtype="bf16", lora_dropout=0.05)
    run = train(cfg)
    state = load_model_state(find_checkpoint(run))
    merged, _, _ = load_trained(run)
    assert not any(isinstance(m, LoraDown) or hasattr(m, "lora_A") for m in merged.modules())
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16)
    checked = 0
    for name, w in merged.named_parameters():
        if not name.endswith("_proj.weight"):
            continue
        prefix = next(k for k in state if k.endswith(name.replace(".weight", ".lora_A.default.weight")))
        a, b = state[prefix], state[prefix.replace("lora_A", "lora_B")]  # fp32 (r, d_in), (d_out, r)
        assert b.abs().sum() > 0  # B starts at zero: the steps trained it
        want = base.get_parameter(name).float() + b @ a * (cfg.lora.alpha / cfg.lora.r)
        torch.testing.assert_close(w.float(), want, rtol=1e-2, atol=1e-3, msg=name)  # bf16 rounding
        checked += 1
    assert checked == 14  # 2 blocks x (q, k, v, o, gate, up, down)
