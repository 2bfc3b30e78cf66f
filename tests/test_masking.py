import torch

from unimae.objective.masking import example_keys, hash_uniform, mar_mask, mrc_visibility


def _maskable(B=6, L=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, L, (B,), generator=g)
    pos = torch.arange(L)[None, :]
    # position 0 is BOS, lengths-1 is EOS, after that padding
    return (pos >= 1) & (pos < (lengths - 1)[:, None])


def test_hash_uniform_is_uniform_and_deterministic():
    u = hash_uniform(torch.arange(100_000))
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01
    assert torch.equal(u, hash_uniform(torch.arange(100_000)))
    assert (
        hash_uniform(torch.arange(10), torch.tensor(1))
        .ne(hash_uniform(torch.arange(10), torch.tensor(2)))
        .all()
    )


def test_mar_mask_exact_ratio_and_only_text_tokens():
    maskable = _maskable()
    keys = example_keys(3, 7, torch.arange(maskable.shape[0]))
    for ratio in (0.0, 0.2, 0.5, 0.8, 1.0):
        m = mar_mask(keys, maskable, ratio)
        assert not (m & ~maskable).any()  # never BOS, EOS or padding
        assert torch.equal(m.sum(-1), torch.round(maskable.sum(-1) * ratio).long())


def test_mar_mask_depends_on_example_not_batch():
    maskable = _maskable(B=8)
    ids = torch.arange(100, 108)
    full = mar_mask(example_keys(1, 2, ids), maskable, 0.5)
    half = mar_mask(example_keys(1, 2, ids[4:]), maskable[4:], 0.5)
    assert torch.equal(full[4:], half)
    other_step = mar_mask(example_keys(1, 3, ids), maskable, 0.5)
    assert not torch.equal(full, other_step)


def test_mrc_visibility_statistics():
    content = _maskable(B=5, L=24)
    key_valid = torch.cat([torch.ones(5, 1, dtype=torch.bool), content], dim=1)  # slot 0 = h_eos
    keys = example_keys(0, 0, torch.arange(5))
    ratio = 0.5
    vis = mrc_visibility(keys, key_valid, ratio)
    B, L, _ = vis.shape
    assert vis[:, :, 0].all()  # h_eos always visible: no row is empty
    diag = torch.eye(L, dtype=torch.bool)[None].expand(B, L, L).clone()
    diag[:, 0, 0] = False
    assert not vis[diag].any()  # a row never sees itself
    assert not (vis & ~key_valid[:, None, :]).any()  # padding never visible
    # each row sees exactly round((1 - ratio) * m) of its m other valid token columns
    others = key_valid[:, None, :].clone().expand(B, L, L) & ~torch.eye(L, dtype=torch.bool)[None]
    others[:, :, 0] = False
    expected = torch.round(others.sum(-1) * (1 - ratio)).long()
    assert torch.equal(vis[:, :, 1:].sum(-1), expected)
    # rows differ from each other (sampled per row)
    rows = vis[0, 1 : int(key_valid[0].sum())]
    assert len({tuple(r.tolist()) for r in rows}) > 1


def test_mrc_visibility_extremes():
    key_valid = torch.ones(2, 10, dtype=torch.bool)
    keys = example_keys(0, 0, torch.arange(2))
    none = mrc_visibility(keys, key_valid, 1.0)
    assert torch.equal(none.sum(-1), torch.ones(2, 10, dtype=torch.long))  # only h_eos
    full = mrc_visibility(keys, key_valid, 0.0)
    assert torch.equal(full[:, 1:, :].sum(-1), torch.full((2, 9), 9))  # h_eos + 8 others
