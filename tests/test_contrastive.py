"""The terms beyond the paper: the contrastive loss against a slow reference (value and gradient),
distillation, the teacher cache, and tiny training runs that train and export with them."""

import json

import numpy as np
import pytest
import torch

from unimae.objective.contrastive import distill_loss, info_nce, symmetric_info_nce
from unimae.training.config import ConfigError, TrainConfig, load_config
from unimae.training.teacher import (
    TeacherCacheError,
    TeacherKey,
    load_teacher_file,
    save_teacher_file,
    teacher_file,
)


def slow_info_nce(a: torch.Tensor, c: torch.Tensor, offset: int, tau: float) -> torch.Tensor:
    """Row by row: -log( exp(cos(a_i, c_pos)/tau) / sum_j exp(cos(a_i, c_j)/tau) ), summed."""
    total = a.new_zeros(())
    for i in range(a.shape[0]):
        sims = torch.stack([torch.cosine_similarity(a[i], c[j], dim=0) for j in range(c.shape[0])]) / tau
        total = total - (sims[offset + i] - torch.logsumexp(sims, dim=0))
    return total


@pytest.mark.parametrize("offset", [0, 3])
def test_info_nce_matches_a_slow_reference_in_value_and_gradient(offset):
    torch.manual_seed(0)
    a = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    c = torch.randn(7, 8, dtype=torch.float64, requires_grad=True)
    fast = info_nce(a, c, offset, 0.1)
    slow = slow_info_nce(a, c, offset, 0.1)
    assert fast.sum.item() == pytest.approx(slow.item(), rel=1e-6) and int(fast.count) == 3
    ga, gc = torch.autograd.grad(fast.sum, (a, c))
    sa, sc = torch.autograd.grad(slow, (a, c))
    # info_nce computes in fp32 (as in training): fp32 tolerances against the fp64 reference
    torch.testing.assert_close(ga.double(), sa, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gc.double(), sc, rtol=1e-5, atol=1e-6)


def test_symmetric_info_nce_is_both_directions_and_rewards_aligned_views():
    torch.manual_seed(1)
    x = torch.randn(5, 16)
    both = symmetric_info_nce(x, x + 0.01 * torch.randn(5, 16), 0.05)
    assert int(both.count) == 10 and int(both.correct) == 10  # every text finds its other view
    shuffled = symmetric_info_nce(x, x[torch.tensor([1, 2, 3, 4, 0])], 0.05)
    assert shuffled.sum > both.sum
    y = torch.randn(5, 16)
    manual = info_nce(x, y, 0, 0.05).sum + info_nce(y, x, 0, 0.05).sum
    assert symmetric_info_nce(x, y, 0.05).sum.item() == pytest.approx(manual.item())


def test_distill_loss_cosine_and_mse():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[3.0, 0.0], [1.0, 0.0]])  # same direction; orthogonal
    cos = distill_loss(s, t, "cosine")
    assert cos.sum.item() == pytest.approx(1.0) and int(cos.count) == 2 and int(cos.correct) == 1
    mse = distill_loss(s, t, "mse")
    assert mse.sum.item() == pytest.approx(1.0)  # (0 + (1 + 1) / 2)
    with pytest.raises(ValueError, match="cosine' or 'mse"):
        distill_loss(s, t, "l1")


def test_teacher_cache_refuses_a_file_for_another_model_or_prompt(tmp_path):
    key = TeacherKey("m", "abc", "say {text}", 16)
    vectors = {"h1": np.ones(4, dtype=np.float32), "h2": np.zeros(4, dtype=np.float32)}
    path = save_teacher_file(teacher_file(key, tmp_path), key, vectors)
    loaded = load_teacher_file(path, key)
    assert set(loaded) == {"h1", "h2"} and loaded["h1"].tolist() == [1, 1, 1, 1]
    for other in (
        TeacherKey("m", "zzz", "say {text}", 16),  # other weights
        TeacherKey("other", "abc", "say {text}", 16),  # other model
        TeacherKey("m", "abc", "mean {text}", 16),  # other prompt
    ):
        assert teacher_file(other, tmp_path) != path  # looked up under its own name
        with pytest.raises(TeacherCacheError, match="refusing a teacher"):
            load_teacher_file(path, other)
    (tmp_path / "broken.npz").write_bytes(b"nope")
    with pytest.raises(TeacherCacheError, match="not a readable teacher file"):
        load_teacher_file(tmp_path / "broken.npz", key)


def test_the_new_terms_are_checked():
    with pytest.raises(ConfigError, match="contrastive.temperature"):
        TrainConfig(contrastive={"weight": 1.0, "temperature": 0.0})
    with pytest.raises(ConfigError, match="distill.prompt"):
        TrainConfig(distill={"weight": 1.0, "prompt": "no slot"})
    with pytest.raises(ConfigError, match="terms of objective unimae"):
        TrainConfig(objective="mntp", contrastive={"weight": 1.0})
    off = TrainConfig()
    assert off.contrastive.weight == 0 and off.distill.weight == 0  # off by default


def _run(tiny_llama, corpus_file, out, **extra):
    from unimae.training.loop import train

    cfg = load_config(
        None,
        dict(
            model=str(tiny_llama),
            data=str(corpus_file),
            output_dir=str(out),
            steps=2,
            batch_size=4,
            max_length=24,
            save_every=0,
            warmup_steps=1,
            lr=1e-3,
            **extra,
        ),
    )
    run = train(cfg)
    return run, [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


PROMPT = 'This sentence : "{text}" means in one word:"'


@pytest.mark.parametrize("view", ["read", "masked"])
def test_contrastive_run_trains_logs_and_exports(view, tiny_llama, corpus_file, tmp_path):
    from unimae.training.trained import load_trained

    run, lines = _run(
        tiny_llama,
        corpus_file,
        tmp_path / view,
        encode_prompt=PROMPT,
        lora=True,
        contrastive={"weight": 1.0, "view": view, "learn_temperature": True},
    )
    assert all(np.isfinite(m["contrastive_loss"]) and 0 <= m["contrastive_acc"] <= 1 for m in lines)
    assert all(np.isfinite(m["mar_loss"]) and np.isfinite(m["mrc_loss"]) for m in lines)
    llm, _, spec = load_trained(run)  # the learned temperature is training-only: not in the export
    assert spec.prompt == PROMPT and not any("temperature" in n for n, _ in llm.named_parameters())


def test_distillation_run_uses_and_reuses_the_teacher_cache(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import unimae.training.teacher as teacher

    calls = []
    compute = teacher.compute_teacher
    monkeypatch.setattr(
        teacher, "compute_teacher", lambda *a, **k: calls.append(len(a[2])) or compute(*a, **k)
    )
    distill = {"weight": 1.0, "prompt": PROMPT, "head": True}
    _, lines = _run(tiny_llama, corpus_file, tmp_path / "a", distill=distill)
    assert all(np.isfinite(m["distill_loss"]) and 0 <= m["distill_loss"] <= 2 for m in lines)
    assert calls == [8]  # 2 steps x 4 texts, each computed once
    _, again = _run(tiny_llama, corpus_file, tmp_path / "b", distill=distill, lora=True)
    assert calls == [8]  # same base weights, prompt and budget (LoRA or not): read from the cache
    assert again[0]["distill_loss"] == pytest.approx(lines[0]["distill_loss"], rel=1e-4)
    _, _ = _run(tiny_llama, corpus_file, tmp_path / "c", distill={**distill, "prompt": "say {text} now"})
    assert calls == [8, 8]  # another prompt: its own teacher
