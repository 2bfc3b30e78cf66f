import math

import torch
import torch.nn.functional as F

from unimae.objective.decoder import TinyDecoder
from unimae.objective.losses import IGNORE, mar_loss, mrc_loss, next_token_targets, token_cross_entropy
from unimae.objective.masking import example_keys, mrc_visibility


def test_mar_loss_matches_slow_reference():
    torch.manual_seed(0)
    B, L, d, V = 3, 9, 8, 13
    hidden = torch.randn(B, L, d)
    head = torch.nn.Linear(d, V, bias=False)
    ids = torch.randint(0, V, (B, L))
    target_mask = torch.rand(B, L) > 0.3
    out = mar_loss(hidden, ids, target_mask, head)
    total, n = 0.0, 0
    for b in range(B):
        for t in range(L - 1):  # state at t predicts the clean token at t + 1
            if target_mask[b, t + 1]:
                logp = torch.log_softmax(head(hidden[b, t]), -1)
                total += -logp[ids[b, t + 1]].item()
                n += 1
    assert out.count.item() == n
    assert math.isclose(out.sum.item(), total, rel_tol=1e-5)


def test_chunked_cross_entropy_matches_full_in_value_and_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(4, 11, 8, requires_grad=True)
    head = torch.nn.Linear(8, 50, bias=False)
    targets = torch.randint(0, 50, (4, 11))
    targets[0, :3] = -100
    full = token_cross_entropy(hidden, targets, head, chunk_size=0)
    (g_full,) = torch.autograd.grad(full.sum, hidden)
    chunked = token_cross_entropy(hidden, targets, head, chunk_size=7)
    (g_chunk,) = torch.autograd.grad(chunked.sum, hidden)
    keep = targets != -100
    ref = F.cross_entropy(head(hidden[keep]), targets[keep], reduction="sum")
    assert torch.allclose(full.sum, ref, atol=1e-5) and torch.allclose(chunked.sum, ref, atol=1e-5)
    assert torch.allclose(g_full, g_chunk, atol=1e-6)
    assert full.correct == chunked.correct


def _slow_decoder_row(dec: TinyDecoder, h1, h2, visible_row, i):
    """Row i of the tiny decoder, head by head, over its visible columns only."""
    d, nh = dec.d, dec.n_heads
    hd = d // nh
    q = dec.wq(dec.norm_q(h1[i]))
    kv = dec.norm_kv(h2)
    cols = [j for j in range(h2.shape[0]) if visible_row[j]]
    outs = []
    for h in range(nh):
        sl = slice(h * hd, (h + 1) * hd)
        scores = torch.stack([q[sl] @ dec.wk(kv[j])[sl] / math.sqrt(hd) for j in cols])
        w = torch.softmax(scores, 0)
        outs.append(sum(w[c] * dec.wv(kv[j])[sl] for c, j in enumerate(cols)))
    x = h1[i] + dec.wo(torch.cat(outs))
    x = x + dec.mlp(dec.norm_mlp(x))
    return dec.norm_out(x)


def test_mrc_loss_matches_slow_reference():
    torch.manual_seed(0)
    B, N, d, V = 2, 7, 16, 23
    dec = TinyDecoder(d, n_heads=2, max_positions=N + 1)
    embed = torch.nn.Embedding(V, d)
    head = torch.nn.Linear(d, V, bias=False)
    h_eos = torch.randn(B, d)
    ids = torch.randint(0, V, (B, N))
    content = torch.ones(B, N, dtype=torch.bool)
    content[1, 5:] = False  # padding in the second example
    key_valid = torch.cat([torch.ones(B, 1, dtype=torch.bool), content], 1)
    visible = mrc_visibility(example_keys(0, 0, torch.arange(B)), key_valid, 0.5)
    targets = torch.cat([torch.full((B, 1), -100), ids.masked_fill(~content, -100)], 1)
    fast = mrc_loss(dec(h_eos, embed(ids), visible), targets, head)

    total, n = 0.0, 0
    for b in range(B):
        # H1 = [h_eos + p_i], H2 = [h_eos, e(x_i) + p_i], written out directly
        H1 = torch.stack([h_eos[b] + dec.pos.weight[i] for i in range(N + 1)])
        H2 = torch.stack([h_eos[b]] + [embed(ids[b, i - 1]) + dec.pos.weight[i] for i in range(1, N + 1)])
        for i in range(1, N + 1):
            if not content[b, i - 1]:
                continue
            out = _slow_decoder_row(dec, H1, H2, visible[b, i], i)
            total += -torch.log_softmax(head(out), -1)[ids[b, i - 1]].item()
            n += 1
    assert fast.count.item() == n
    assert math.isclose(fast.sum.item(), total, rel_tol=1e-4)


def test_next_token_targets_is_the_causal_shift_of_mar_and_mntp():
    from unimae.objective.losses import mar_targets
    from unimae.objective.mntp import mntp_targets

    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    chosen = torch.tensor([[False, True, True, False], [True, False, False, True]])
    want = torch.tensor([[6, 7, IGNORE, IGNORE], [IGNORE, IGNORE, 12, IGNORE]])  # t holds token t + 1
    assert torch.equal(next_token_targets(ids.masked_fill(~chosen, IGNORE)), want)
    assert torch.equal(mar_targets(ids, chosen), want) and torch.equal(mntp_targets(ids, chosen), want)
