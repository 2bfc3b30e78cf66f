import numpy as np
import torch
from conftest import random_sentences

from unimae.encoding.loading import load_causal_lm
from unimae.objective.model import UniMAE
from unimae.tokens import bos_id_if_added, eos_token_id, mask_token_id
from unimae.training.config import TrainConfig
from unimae.training.data import collate, tokenize_corpus


def _setup(path, **kw):
    llm, tok = load_causal_lm(str(path))
    eos = eos_token_id(tok)
    corpus = tokenize_corpus(random_sentences(8, seed=1), tok, 24, eos)
    batch = collate(corpus, list(range(len(corpus))), tok.pad_token_id, bos_id_if_added(tok) is not None)
    cfg = TrainConfig(**kw)  # objective and decoder options by their flat names
    torch.manual_seed(0)
    return UniMAE(llm, mask_token_id(tok), cfg.objective, cfg.decoder, max_length=24), batch, tok


def test_h_eos_is_the_state_at_the_appended_eos(tiny_model):
    model, batch, tok = _setup(tiny_model)
    eos = eos_token_id(tok)
    assert (batch.input_ids[torch.arange(len(batch)), batch.eos_index] == eos).all()
    model.eval()
    out = model(batch, step=0)
    assert out.h_eos.shape == (len(batch), model.hf.config.hidden_size)
    assert torch.isfinite(out.loss)
    assert out.mar.count > 0 and out.mrc.count == batch.content_mask.sum()


def test_overfit_one_batch_drives_both_losses_down(tiny_model):
    model, batch, _ = _setup(tiny_model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        out = model(batch, step=0)  # same masks every time: a fixed batch to memorise
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if first is None:
            first = (out.mar.mean.item(), out.mrc.mean.item())
    last = (out.mar.mean.item(), out.mrc.mean.item())
    assert last[0] < 0.5 * first[0], (first, last)
    assert last[1] < 0.5 * first[1], (first, last)


def test_weights_switch_off_terms(tiny_llama):
    model, batch, _ = _setup(tiny_llama, mrc_weight=0.0)
    out = model(batch, step=0)
    assert out.mrc is None and out.mar is not None
    model, batch, _ = _setup(tiny_llama, alpha=0.0)
    out = model(batch, step=0)
    assert out.mar is None and out.mrc is not None


def test_own_decoder_embeddings(tiny_llama):
    model, batch, _ = _setup(tiny_llama, decoder_share_embeddings=False)
    out = model(batch, step=0)
    out.loss.backward()
    assert model.dec_head.weight.grad is not None


def test_mntp_attention_is_bidirectional(tiny_model):
    """A change to a later token changes an earlier position's state, only with MNTP's attention."""
    from unimae import Encoder
    from unimae.llm import bidirectional_mask

    llm, tok = load_causal_lm(str(tiny_model))
    llm.eval()
    ids = torch.tensor([tok("the cat runs to the river", add_special_tokens=False).input_ids])
    changed = ids.clone()
    changed[0, -1] = tok.convert_tokens_to_ids("king")
    mask = torch.ones_like(ids)

    def states(x, attn):
        return llm.base_model(input_ids=x, attention_mask=attn, use_cache=False).last_hidden_state[0, 0]

    causal = (states(ids, mask), states(changed, mask))
    assert torch.allclose(*causal, atol=1e-6)  # causal: position 0 cannot see the last token
    bi = bidirectional_mask(mask, torch.float32)
    bidir = (states(ids, bi), states(changed, bi))
    assert not torch.allclose(*bidir, atol=1e-4)  # bidirectional: it can

    enc = Encoder(llm, tok, pooling="mean", attention="bidirectional")
    texts = ["the cat runs to the river .", "a dog ."]
    right = enc.encode(texts)
    enc.padding_side = "left"
    np.testing.assert_allclose(enc.encode(texts), right, atol=1e-5)


def test_mntp_training_step(tiny_llama):
    from unimae.objective.mntp import MNTP

    llm, tok = load_causal_lm(str(tiny_llama))
    corpus = tokenize_corpus(random_sentences(8, seed=1), tok, 24, eos_token_id(tok))
    batch = collate(corpus, list(range(len(corpus))), tok.pad_token_id, True)
    model = MNTP(llm, mask_token_id(tok), mask_ratio=0.2)
    out = model(batch, step=0)
    assert out.terms["mntp"].count == model.target_counts(batch, 0)["mntp"] > 0
    out.loss.backward()


def test_slices_with_global_counts_add_up_to_the_whole_batch_loss(tiny_llama):
    """The loss a process trains on its slice (global counts passed in) sums to the whole batch's loss."""
    model, batch, _ = _setup(tiny_llama)
    model.eval()  # no dropout: both passes see the same network
    whole = model(batch, step=3)  # no counts: the batch's own
    counts = model.target_counts(batch, step=3)
    assert counts == {"mar": int(whole.mar.count), "mrc": int(whole.mrc.count)}
    halves = [model(batch.slice(a, b), 3, counts) for a, b in ((0, 3), (3, len(batch)))]
    torch.testing.assert_close(sum(h.loss for h in halves), whole.loss, rtol=1e-5, atol=1e-6)
    want = whole.mar.sum / counts["mar"] + whole.mrc.sum / counts["mrc"]  # alpha = mrc_weight = 1
    torch.testing.assert_close(whole.loss, want)


def test_param_groups_and_unused_parameters(tiny_llama):
    model, _, _ = _setup(tiny_llama)
    groups = model.param_groups()
    decoder = {id(p) for p in model.decoder.parameters()}
    assert {id(p) for p in groups["decoder"]} == decoder  # shared embeddings stay in the LLM group
    assert {id(p) for p in groups["llm"]} == {id(p) for p in model.llm.parameters()}
    assert not model.find_unused_parameters
    own, _, _ = _setup(tiny_llama, decoder_share_embeddings=False, mrc_weight=0.0)
    assert {id(p) for p in own.dec_head.parameters()} <= {id(p) for p in own.param_groups()["decoder"]}
    assert own.find_unused_parameters  # MRC off: the tiny decoder gets no gradient
