import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from unimae.data.corpus import CorpusError
from unimae.training.checkpoint import checkpoint_step, find_checkpoint
from unimae.training.config import load_config
from unimae.training.loop import NonFiniteLossError, train
from unimae.training.trained import load_trained


def _cfg(model, data, out, **kw):
    base = dict(
        model=str(model),
        data=str(data),
        output_dir=str(out),
        steps=3,
        batch_size=4,
        max_length=16,
        save_every=2,
        warmup_steps=1,
        lr=1e-3,
        decoder_lr=1e-3,
    )
    base.update(kw)
    return load_config(None, base)


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_three_steps_checkpoint_resume(tiny_model, corpus_file, tmp_path, monkeypatch):
    # an uninterrupted 3-step run
    full = train(_cfg(tiny_model, corpus_file, tmp_path / "full"))
    assert checkpoint_step(find_checkpoint(full)) == 3
    assert not (full / "model").exists()  # training checkpoints; exporting is unimae.pipeline's
    saved = load_config(full / "config.yaml")
    assert saved.optim.steps == 3 and saved.model == str(tiny_model)
    m_full = _metrics(full)
    assert [m["step"] for m in m_full] == [1, 2, 3]
    assert all(
        math.isfinite(m["mar_loss"]) and math.isfinite(m["mrc_loss"]) and 0 <= m["mrc_acc"] <= 1
        for m in m_full
    )

    # the same run killed right after its step-2 checkpoint, then resumed
    import unimae.training.loop as loop

    real_save = loop.save_checkpoint

    def save_then_die(accelerator, run_dir, step):
        real_save(accelerator, run_dir, step)
        raise KeyboardInterrupt

    part = tmp_path / "part"
    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model, corpus_file, part))
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert checkpoint_step(find_checkpoint(part)) == 2
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(tiny_model, corpus_file, part))
    train(_cfg(tiny_model, corpus_file, part), resume=True)
    m_part = _metrics(part)
    assert [m["step"] for m in m_part] == [1, 2, 3]
    for a, b in zip(m_full, m_part, strict=True):
        assert a["mar_loss"] == pytest.approx(b["mar_loss"], rel=1e-4)
        assert a["mrc_loss"] == pytest.approx(b["mrc_loss"], rel=1e-4)

    # the resumed run's final weights are the uninterrupted run's
    a, b = load_trained(full)[0].state_dict(), load_trained(part)[0].state_dict()
    for k, v in a.items():
        assert torch.allclose(v, b[k], atol=1e-6), k


@pytest.mark.parametrize("objective", ["unimae", "mntp"])
def test_load_trained_merges_lora_and_says_how_to_embed(tiny_llama, corpus_file, tmp_path, objective):
    run = train(
        _cfg(
            tiny_llama,
            corpus_file,
            tmp_path / "lora",
            objective=objective,
            lora=True,
            lora_r=4,
            lora_alpha=8,
            steps=2,
            gradient_checkpointing=True,
        )
    )
    llm, tok, spec = load_trained(run)
    sd = llm.state_dict()
    assert not any("lora" in k or "decoder" in k for k in sd)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    assert sd.keys() == base.keys()
    assert any(not torch.equal(sd[k], base[k]) for k in base if "q_proj" in k)  # the adapters were merged in
    want = {"unimae": ("eos", "causal"), "mntp": ("mean", "bidirectional")}[objective]
    assert (spec.pooling, spec.attention) == want
    assert spec.eos_token_id == tok.eos_token_id and spec.eos_token == tok.eos_token and spec.add_bos
    assert (spec.objective, spec.steps, spec.max_length, spec.trained_from) == (
        objective,
        2,
        16,
        str(tiny_llama),
    )
    ids = tok("the cat", return_tensors="pt").input_ids
    assert llm.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3


def test_non_finite_loss_stops_with_message(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import unimae.objective.model as model_mod

    real = model_mod.mar_loss

    def poisoned(*a, **k):
        out = real(*a, **k)
        out.sum = out.sum * float("nan")
        return out

    monkeypatch.setattr(model_mod, "mar_loss", poisoned)
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss at step 1 \(mar sum nan, mrc sum [0-9.]+\)"
    ):
        train(_cfg(tiny_llama, corpus_file, tmp_path / "nan"))


def test_bad_inputs(tiny_llama, corpus_file, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(CorpusError):
        train(_cfg(tiny_llama, empty, tmp_path / "r1"))
    with pytest.raises(CorpusError):
        train(_cfg(tiny_llama, tmp_path / "missing.txt", tmp_path / "r2"))
    with pytest.raises(ValueError, match="exceeds the model's context"):
        train(_cfg(tiny_llama, corpus_file, tmp_path / "r3", max_length=4096))
    # config validation (field names, types, ranges) is tested with TrainConfig, not here


def test_grad_accumulation_matches_full_batch(tiny_llama, corpus_file, tmp_path):
    one = train(_cfg(tiny_llama, corpus_file, tmp_path / "a", steps=2))
    acc = train(_cfg(tiny_llama, corpus_file, tmp_path / "b", steps=2, grad_accum_steps=2))
    for a, b in zip(_metrics(one), _metrics(acc)):
        assert a["mar_loss"] == pytest.approx(b["mar_loss"], rel=1e-4)
        assert a["mrc_loss"] == pytest.approx(b["mrc_loss"], rel=1e-4)


def test_mntp_objective_trains(tiny_llama, corpus_file, tmp_path):
    run = train(_cfg(tiny_llama, corpus_file, tmp_path / "mntp", objective="mntp", steps=2))
    m = _metrics(run)
    assert "mntp_loss" in m[0] and "mar_loss" not in m[0] and math.isfinite(m[-1]["mntp_loss"])
    assert checkpoint_step(find_checkpoint(run)) == 2
