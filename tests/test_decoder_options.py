"""The tiny decoder's conditioning options, its diagnostics and prompted training (issue 14), on the tiny models."""

import json
import types

import pytest
import torch
from conftest import random_sentences

from unimae.encoding.loading import load_causal_lm
from unimae.objective.config import DecoderConfig
from unimae.objective.decoder import final_norm_weight, rotary
from unimae.objective.losses import IGNORE
from unimae.objective.model import UniMAE, decoder_stats, most_frequent_token_hits
from unimae.tokens import bos_id_if_added, eos_token_id, mask_token_id
from unimae.training.config import ConfigError, TrainConfig, load_config
from unimae.training.data import collate, tokenize_corpus
from unimae.training.metrics import StepMetrics, bar_postfix, step_record

PROMPT = "the king says {text} and the queen"
ALL_ON = dict(
    decoder_input_norm=True,
    decoder_input_proj=True,
    decoder_output_norm_init="llm",
    decoder_rope=True,
    decoder_pos_lr_mult=10.0,
)


def _setup(path, **kw):
    llm, tok = load_causal_lm(str(path))
    corpus = tokenize_corpus(random_sentences(8, seed=1), tok, 24, eos_token_id(tok))
    batch = collate(corpus, list(range(len(corpus))), tok.pad_token_id, bos_id_if_added(tok) is not None)
    cfg = TrainConfig(**kw)  # the options by their flat names (TrainConfig's LEGACY table)
    torch.manual_seed(0)
    return UniMAE(llm, mask_token_id(tok), cfg.objective, cfg.decoder, max_length=24), batch


def test_defaults_add_no_parameters(tiny_llama):
    model, batch = _setup(tiny_llama)
    names = {n for n, _ in model.decoder.named_parameters()}
    assert not any(n.startswith(("in_scale", "in_proj")) for n in names)
    h = torch.randn(3, model.decoder.d)
    assert model.decoder.condition(h) is h  # the decoder sees raw h_eos
    torch.testing.assert_close(model.decoder.norm_out.weight, torch.ones(model.decoder.d))


def test_input_norm_is_scale_free_and_starts_at_the_embedding_rms(tiny_model):
    model, _ = _setup(tiny_model, decoder_input_norm=True)
    emb = model.hf.get_input_embeddings().weight.detach()
    assert model.decoder.in_scale.item() == pytest.approx(emb.pow(2).mean().sqrt().item(), rel=1e-5)
    h = torch.randn(4, model.decoder.d)
    seen = model.decoder.condition(h)
    torch.testing.assert_close(model.decoder.condition(40 * h), seen)  # ||h_eos|| no longer matters
    torch.testing.assert_close(seen.pow(2).mean(-1).sqrt(), model.decoder.in_scale.detach().expand(4))


def test_input_projection_starts_at_a_scaled_identity(tiny_llama):
    model, _ = _setup(tiny_llama, decoder_input_proj=True)
    emb_rms = model.hf.get_input_embeddings().weight.detach().pow(2).mean().sqrt()
    scale = emb_rms / final_norm_weight(model.hf).pow(2).mean().sqrt()
    h = torch.randn(2, model.decoder.d)
    torch.testing.assert_close(model.decoder.condition(h), scale * h)
    normed, _ = _setup(tiny_llama, decoder_input_norm=True, decoder_input_proj=True)
    torch.testing.assert_close(normed.decoder.in_proj.weight, torch.eye(normed.decoder.d))


def test_output_norm_from_the_llm(tiny_model):
    model, _ = _setup(tiny_model, decoder_output_norm_init="llm")
    body = model.hf.get_decoder() if hasattr(model.hf, "get_decoder") else model.hf.base_model
    final = getattr(body, "norm", None) or body.ln_f
    torch.testing.assert_close(model.decoder.norm_out.weight, final.weight.detach())
    with pytest.raises(ConfigError, match="decoder.output_norm_init"):
        _setup(tiny_model, decoder_output_norm_init="zeros")


def test_rotary_scores_depend_on_relative_position():
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)  # the same vector at every position
    k = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)
    s = rotary(q) @ rotary(k).transpose(-1, -2)  # (1, 1, 6, 6)
    for offset in range(-5, 6):
        diag = torch.diagonal(s[0, 0], offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag))
    assert not torch.allclose(torch.diagonal(s[0, 0], 0)[0], torch.diagonal(s[0, 0], 2)[0])


def test_rope_separates_rows_that_see_the_same_keys(tiny_llama):
    """Query rows equal (positions zeroed) and every key visible: only rotary positions tell rows apart.

    (Rows still share the residual h_eos, which dominates them unless decoder_input_norm shrinks it.)
    """
    plain, _ = _setup(tiny_llama)
    roped, _ = _setup(tiny_llama, decoder_rope=True)
    with torch.no_grad():
        plain.decoder.pos.weight.zero_()
        plain.decoder.wo.weight.copy_(torch.eye(plain.decoder.d))  # let the attention's output show
        plain.decoder.wq.weight.mul_(50)  # and its pattern be sharp
    roped.decoder.load_state_dict(plain.decoder.state_dict())
    h = torch.randn(2, plain.decoder.d)
    emb = torch.randn(2, 7, plain.decoder.d)
    visible = torch.ones(2, 8, 8, dtype=torch.bool)
    rows = plain.decoder(h, emb, visible)
    torch.testing.assert_close(rows, rows[:, :1].expand_as(rows))  # every row the same guess
    rows = roped.decoder(h, emb, visible)
    assert (rows[:, 1] - rows[:, 2]).abs().max() > 1e-2


def test_pos_lr_mult_keeps_init_and_speeds_up_positions(tiny_llama):
    slow, _ = _setup(tiny_llama)
    fast, _ = _setup(tiny_llama, decoder_pos_lr_mult=10.0)
    p0 = slow.decoder.positions(5, torch.device("cpu")).detach()
    torch.testing.assert_close(fast.decoder.positions(5, torch.device("cpu")).detach(), p0)

    def moved(model):
        opt = torch.optim.Adam([model.decoder.pos.weight], lr=1e-3)
        model.decoder.positions(5, torch.device("cpu")).pow(2).sum().backward()
        opt.step()
        return (model.decoder.positions(5, torch.device("cpu")).detach() - p0).abs().mean().item()

    assert moved(fast) == pytest.approx(10 * moved(slow), rel=1e-2)


@pytest.mark.parametrize("options", [ALL_ON, dict(decoder_input_norm=True), dict(decoder_rope=True)])
def test_overfit_with_options(tiny_model, options):
    model, batch = _setup(tiny_model, **options)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        out = model(batch, step=0)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first or (out.mar.mean.item(), out.mrc.mean.item())
    assert out.mrc.mean.item() < 0.5 * first[1] and out.mar.mean.item() < 0.5 * first[0]
    for name in ("in_scale", "in_proj"):
        param = getattr(model.decoder, name, None)
        assert param is None or (param.weight if hasattr(param, "weight") else param).grad is not None


# --- diagnostics ---------------------------------------------------------------------------------------


def test_most_frequent_token_hits():
    targets = torch.tensor([[IGNORE, 5, 5, 7, IGNORE], [IGNORE, 1, 2, 3, 4], [IGNORE] * 5])
    assert most_frequent_token_hits(targets).item() == 2 + 1


def test_decoder_stats_row_cosine():
    targets = torch.tensor([[IGNORE, 1, 2, 3], [IGNORE, 1, 2, IGNORE]])
    same = torch.ones(2, 4, 6)
    stats = decoder_stats(same, targets, torch.ones(4, 6))
    assert stats["mrc_row_cos"][0].item() == pytest.approx(2.0)  # two texts, cosine 1 each
    assert stats["mrc_row_cos"][1].item() == 2
    assert stats["pos_norm"][0].item() == pytest.approx(2 * 6**0.5)
    orth = torch.eye(4, 6).expand(2, 4, 6)  # rows 1..3 of a text are orthogonal
    assert decoder_stats(orth, targets, torch.ones(4, 6))["mrc_row_cos"][0].item() == pytest.approx(0.0)
    assert stats["mrc_acc_mft"][0].item() == 2 and stats["mrc_acc_mft"][1].item() == 5


def test_diagnostics_reach_the_metrics_line(tiny_llama):
    model, batch = _setup(tiny_llama)
    metrics = StepMetrics(torch.device("cpu"))
    for half in (batch.slice(0, 4), batch.slice(4, 8)):  # two micro-batches sum like one
        metrics.add_output(model(half, step=0), half.attention_mask.sum())
    acc = types.SimpleNamespace(reduce=lambda t, reduction: t)
    record = step_record(1, metrics.reduce(acc), model.target_counts(batch, 0))
    whole = model(batch, step=0)
    h_norm = whole.h_eos.norm(dim=-1).mean().item()
    assert record["h_eos_norm"] == pytest.approx(h_norm, rel=1e-5)
    assert record["mrc_acc_mft"] == pytest.approx(
        most_frequent_token_hits(batch.input_ids.masked_fill(~batch.content_mask, IGNORE)).item()
        / batch.content_mask.sum().item()
    )
    assert 0 < record["mrc_acc_mft"] <= 1 and -1 <= record["mrc_row_cos"] <= 1 and record["pos_norm"] > 0
    assert not any("/" in k for k in record)
    assert set(bar_postfix(record)) == {"mar_loss", "mrc_loss", "mrc_acc", "mrc_acc_mft", "mrc_row_cos"}
    json.dumps(record)


# --- prompted training ---------------------------------------------------------------------------------


def test_text_only_keeps_the_text_inside_the_prompt(tiny_model):
    from unimae.encoding.pooling import PromptTokens
    from unimae.training.data import prompted_corpus

    llm, tok = load_causal_lm(str(tiny_model))
    eos, bos = eos_token_id(tok), bos_id_if_added(tok)
    texts = random_sentences(4, seed=2)
    plain = tokenize_corpus(texts, tok, 64, eos)
    prompt = PromptTokens.of(tok, PROMPT)
    wrapped = prompted_corpus(plain, prompt, 64, eos, bos)
    batch = collate(wrapped, range(4), eos, bos is not None).text_only(len(prompt.prefix), len(prompt.suffix))
    for i, ids in enumerate(plain):
        text = batch.input_ids[i][batch.content_mask[i]].tolist()
        assert text == ids[int(bos is not None) : -1]  # exactly the text's tokens
    model = UniMAE(llm, mask_token_id(tok), TrainConfig(prompt=PROMPT).objective, max_length=64)
    out = model(batch, step=0)
    assert out.mrc.count == sum(len(ids) - 1 - int(bos is not None) for ids in plain)
    assert model.embedding_spec(max_length=64).prompt == PROMPT


def test_prompted_training_run_exports_its_prompt(tiny_llama, corpus_file, tmp_path):
    from unimae.training.loop import train
    from unimae.training.trained import load_trained

    cfg = load_config(
        None,
        dict(
            model=str(tiny_llama),
            data=str(corpus_file),
            output_dir=str(tmp_path / "run"),
            steps=2,
            batch_size=4,
            max_length=24,
            save_every=0,
            warmup_steps=1,
            prompt=PROMPT,
            **ALL_ON,
        ),
    )
    run = train(cfg)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2] and all(m["mrc_acc_mft"] > 0 for m in lines)
    _, _, spec = load_trained(run)
    assert spec.prompt == PROMPT and spec.pooling == "eos"


def test_options_of_the_unimae_objective_are_refused_for_mntp():
    """MNTP has no tiny decoder and no prompt: such settings are refused, never silently ignored."""
    with pytest.raises(ConfigError, match="decoder section is for objective unimae"):
        TrainConfig(objective="mntp", decoder_rope=True)
    with pytest.raises(ConfigError, match="prompt and encode_prompt are for objective unimae"):
        TrainConfig(objective="mntp", prompt=PROMPT)
    assert TrainConfig(objective="mntp").decoder == DecoderConfig()


def test_config_checks_the_new_fields():
    with pytest.raises(ConfigError, match="exactly once"):
        TrainConfig(prompt="no text here")
    with pytest.raises(ConfigError, match="decoder.output_norm_init"):
        TrainConfig(decoder_output_norm_init="zeros")
    with pytest.raises(ConfigError, match="decoder.pos_lr_mult"):
        TrainConfig(decoder_pos_lr_mult=0.0)
    assert TrainConfig().decoder == DecoderConfig(
        input_norm=False, input_proj=False, output_norm_init="ones", rope=False, pos_lr_mult=1.0
    )
    assert TrainConfig().objective.prompt is None


def test_encode_prompt_is_what_the_export_records(tiny_llama, corpus_file, tmp_path):
    """Plain training, read through a template: the export records encode_prompt, not the training prompt."""
    from unimae.training.loop import train
    from unimae.training.trained import load_trained

    base = dict(
        model=str(tiny_llama), data=str(corpus_file), steps=1, batch_size=4, max_length=24, save_every=0
    )
    run = train(load_config(None, dict(base, output_dir=str(tmp_path / "a"), encode_prompt=PROMPT)))
    _, _, spec = load_trained(run)
    assert spec.prompt == PROMPT and spec.pooling == "eos"
    run = train(
        load_config(None, dict(base, output_dir=str(tmp_path / "b"), prompt=PROMPT, encode_prompt="{text}"))
    )
    assert load_trained(run)[2].prompt is None  # '{text}': the text alone, though trained with a prompt


def test_encode_prompt_is_checked():
    with pytest.raises(ConfigError, match="encode_prompt must hold"):
        TrainConfig(encode_prompt="no text")
    with pytest.raises(ConfigError, match="prompt and encode_prompt are for objective unimae"):
        TrainConfig(objective="mntp", encode_prompt=PROMPT)
