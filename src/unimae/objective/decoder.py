"""The tiny decoder of masked reconstruction (RetroMAE-style "enhanced decoding").

One transformer layer of width d reads two streams:

* query stream     ``H1 = [h_eos + p_0, h_eos + p_1, ..., h_eos + p_N]``
* key/value stream ``H2 = [h_eos, e(x_1) + p_1, ..., e(x_N) + p_N]`` (clean tokens)

``A = softmax(Q K^T / sqrt(d_head) + M) V`` with the sampled visibility mask ``M`` (see
``masking.mrc_visibility``); an MLP follows. Row i then predicts ``x_i`` through the vocabulary head.
It exists only for training: the exported model never contains it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyDecoder(nn.Module):
    """A single pre-norm attention + MLP layer over the (H1, H2) streams.

    Args:
        d: hidden size of the LLM.
        n_heads: attention heads (d must be divisible by it).
        max_positions: number of trainable absolute positions ``p_0 .. p_{max_positions-1}``.
        mlp_ratio: MLP width as a multiple of d.
        pos_init_std: std of the initial position embeddings.
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        max_positions: int,
        mlp_ratio: float = 4.0,
        eps: float = 1e-6,
        pos_init_std: float = 0.02,
    ):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"decoder width {d} is not divisible by decoder_heads={n_heads}")
        self.d, self.n_heads = d, n_heads
        self.pos = nn.Embedding(max_positions, d)  # p_0 .. p_N
        self.norm_q = nn.RMSNorm(d, eps=eps)
        self.norm_kv = nn.RMSNorm(d, eps=eps)
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.norm_mlp = nn.RMSNorm(d, eps=eps)
        hidden = int(d * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(d, hidden, bias=False), nn.GELU(), nn.Linear(hidden, d, bias=False)
        )
        self.norm_out = nn.RMSNorm(d, eps=eps)  # outputs go to the LLM's head, which expects normed states
        self.reset_parameters(pos_init_std=pos_init_std)

    def reset_parameters(self, std: float = 0.02, pos_init_std: float = 0.02) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, nn.RMSNorm):
                nn.init.ones_(m.weight)
        nn.init.normal_(self.pos.weight, std=pos_init_std)

    def streams(self, h_eos: torch.Tensor, token_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Build H1 and H2 in the decoder's own precision (fp32 even over a bf16 LLM).

        h_eos: ``(B, d)``; token_emb: ``(B, N, d)`` input embeddings e(x_1..x_N) of the clean tokens.
        Returns H1, H2: ``(B, N+1, d)`` each. The positions are looked up through ``self.pos`` (a module
        call, never a slice of its weight), so an engine that gathers a module's parameters when it
        runs (DeepSpeed ZeRO-3, FSDP) sees them whole.
        """
        B, N, d = token_emb.shape
        if N + 1 > self.pos.num_embeddings:
            raise ValueError(
                f"sequence of {N} tokens exceeds the decoder's {self.pos.num_embeddings - 1} positions"
            )
        dtype = self.wq.weight.dtype
        p = self.pos(torch.arange(N + 1, device=token_emb.device)).to(dtype)  # (N+1, d)
        h = h_eos.to(dtype)[:, None, :]  # (B, 1, d)
        h1 = h + p[None]  # (B, N+1, d)
        h2 = torch.cat([h, token_emb.to(dtype) + p[None, 1:]], dim=1)  # (B, N+1, d)
        return h1, h2

    def forward(self, h_eos: torch.Tensor, token_emb: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """The decoded rows: h_eos ``(B, d)``, token_emb ``(B, N, d)``, visible ``(B, N+1, N+1)`` bool
        (True = may attend). Returns ``(B, N+1, d)``; row i reconstructs token x_i (row 0 is h_eos's)."""
        h1, h2 = self.streams(h_eos, token_emb)
        return self.attend(h1, h2, visible)

    def attend(self, h1: torch.Tensor, h2: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """h1, h2: ``(B, L, d)``; visible: ``(B, L, L)`` bool (True = may attend). Returns ``(B, L, d)``."""
        B, L, d = h1.shape
        nh, hd = self.n_heads, d // self.n_heads
        q = self.wq(self.norm_q(h1)).view(B, L, nh, hd).transpose(1, 2)  # (B, nh, L, hd)
        kv = self.norm_kv(h2)
        k = self.wk(kv).view(B, L, nh, hd).transpose(1, 2)
        v = self.wv(kv).view(B, L, nh, hd).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None])  # (B, nh, L, hd)
        x = h1 + self.wo(a.transpose(1, 2).reshape(B, L, d))  # residual on the query stream
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_out(x)
