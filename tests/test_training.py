import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from unimae import Encoder
from unimae.data.corpus import CorpusError
from unimae.training.checkpoint import checkpoint_step, find_checkpoint
from unimae.training.config import load_config, parse_overrides
from unimae.training.loop import NonFiniteLossError, export_run, train


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


def test_three_steps_checkpoint_resume_export_encode(tiny_model, corpus_file, tmp_path, monkeypatch):
    # an uninterrupted 3-step run
    full = train(_cfg(tiny_model, corpus_file, tmp_path / "full"))
    assert checkpoint_step(find_checkpoint(full)) == 3
    saved = load_config(full / "config.yaml")
    assert saved.steps == 3 and saved.model == str(tiny_model)
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
    assert checkpoint_step(find_checkpoint(part)) == 2 and not (part / "model").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(tiny_model, corpus_file, part))
    train(_cfg(tiny_model, corpus_file, part), resume=True)
    m_part = _metrics(part)
    assert [m["step"] for m in m_part] == [1, 2, 3]
    for a, b in zip(m_full, m_part):
        assert a["mar_loss"] == pytest.approx(b["mar_loss"], rel=1e-4)
        assert a["mrc_loss"] == pytest.approx(b["mrc_loss"], rel=1e-4)

    # the exported folder is a plain causal LM that generates, plus how to embed
    model_dir = full / "model"
    info = json.loads((model_dir / "unimae.json").read_text())
    assert (
        info["pooling"] == "eos"
        and info["eos_token_id"] == AutoTokenizer.from_pretrained(model_dir).eos_token_id
    )
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("the cat", return_tensors="pt").input_ids
    assert lm.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3
    vecs = Encoder.from_pretrained(str(full)).encode(["the cat runs .", "a dog ."])
    assert vecs.shape == (2, lm.config.hidden_size) and np.isfinite(vecs).all()

    # export from the checkpoint gives the same weights as the end-of-training export
    again = export_run(part, tmp_path / "exported")
    a = AutoModelForCausalLM.from_pretrained(again).state_dict()
    for k, v in lm.state_dict().items():
        assert torch.allclose(v, a[k], atol=1e-6), k


@pytest.mark.parametrize("objective", ["unimae", "mntp"])
def test_lora_run_merges_on_export(tiny_llama, corpus_file, tmp_path, objective):
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
    sd = AutoModelForCausalLM.from_pretrained(run / "model").state_dict()
    assert not any("lora" in k for k in sd)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    assert any(not torch.equal(sd[k], base[k]) for k in base if "q_proj" in k)  # the adapters were merged in


def test_non_finite_loss_stops_with_message(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import unimae.objective.model as model_mod

    real = model_mod.mar_loss

    def poisoned(*a, **k):
        out = real(*a, **k)
        out.sum = out.sum * float("nan")
        return out

    monkeypatch.setattr(model_mod, "mar_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 1"):
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
    with pytest.raises(ValueError, match="unknown config field"):
        load_config(None, {"stepz": 3})
    with pytest.raises(ValueError, match="mar_mask_ratio"):
        load_config(None, {"mar_mask_ratio": 1.5})
    with pytest.raises(ValueError, match="divisible"):
        load_config(None, {"batch_size": 6, "grad_accum_steps": 4})
    assert parse_overrides(["steps=7", "lora=true", "mask_token=<x>"]) == {
        "steps": 7,
        "lora": True,
        "mask_token": "<x>",
    }


def test_grad_accumulation_matches_full_batch(tiny_llama, corpus_file, tmp_path):
    one = train(_cfg(tiny_llama, corpus_file, tmp_path / "a", steps=2, export=False))
    acc = train(_cfg(tiny_llama, corpus_file, tmp_path / "b", steps=2, grad_accum_steps=2, export=False))
    for a, b in zip(_metrics(one), _metrics(acc)):
        assert a["mar_loss"] == pytest.approx(b["mar_loss"], rel=1e-4)
        assert a["mrc_loss"] == pytest.approx(b["mrc_loss"], rel=1e-4)


def test_mntp_objective_trains_and_exports_bidirectional_mean(tiny_llama, corpus_file, tmp_path):
    run = train(_cfg(tiny_llama, corpus_file, tmp_path / "mntp", objective="mntp", steps=2))
    m = _metrics(run)
    assert "mntp_loss" in m[0] and "mar_loss" not in m[0] and math.isfinite(m[-1]["mntp_loss"])
    info = json.loads((run / "model" / "unimae.json").read_text())
    assert info["pooling"] == "mean" and info["attention"] == "bidirectional"
    enc = Encoder.from_pretrained(str(run))
    assert enc.attention == "bidirectional" and enc.pooling == "mean"
