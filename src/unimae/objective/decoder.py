"""The tiny decoder of masked reconstruction (RetroMAE-style "enhanced decoding").

One transformer layer of width d reads two streams:

* query stream     ``H1 = [h_eos + p_0, h_eos + p_1, ..., h_eos + p_N]``
* key/value stream ``H2 = [h_eos, e(x_1) + p_1, ..., e(x_N) + p_N]`` (clean tokens)

``A = softmax(Q K^T / sqrt(d_head) + M) V`` with the sampled visibility mask ``M`` (see
``masking.mrc_visibility``); an MLP follows. Row i then predicts ``x_i`` through the vocabulary head.
It exists only for training: the exported model never contains it.

Conditioning options (issue 14; all off by default, which is the decoder as above). A Llama-family
final norm makes ``h_eos`` ~14x longer than ``e(x) + p`` (SmolLM2: norm ~44 against ~3.2), so the
query rows are nearly identical and MRC degenerates into a bag-of-words loss on ``h_eos``:

* ``input_norm``: the decoder sees ``g * rms_norm(h_eos)``, ``g`` a learned scalar initialised at the
  embedding table's RMS (in H1 and in H2[0]);
* ``input_proj``: a learned ``d x d`` map of ``h_eos`` initialised at ``input_proj_scale * I``;
* ``rope``: rotary positions on the attention's queries and keys, a position signal that the size of
  ``h_eos`` cannot drown (the absolute ``p_i`` stay);
* ``pos_lr_mult``: positions stored as ``p = pos_lr_mult * theta``; under Adam this multiplies the
  position table's learning rate by ``pos_lr_mult`` (same initial ``p``).

The output norm can be initialised from the LLM's final-norm weight (``init_output_norm``), so decoded
rows land where the tied head expects them. None of this touches the exported embedding (raw ``h_eos``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from unimae.objective.config import DecoderConfig


class TinyDecoder(nn.Module):
    """A single pre-norm attention + MLP layer over the (H1, H2) streams.

    Args:
        d: hidden size of the LLM.
        n_heads: attention heads (d must be divisible by it).
        max_positions: number of trainable absolute positions ``p_0 .. p_{max_positions-1}``.
        mlp_ratio: MLP width as a multiple of d.
        pos_init_std: std of the initial position embeddings.
        input_norm_scale: if set, h_eos is RMS-normalised and times a learned scalar starting here.
        input_proj_scale: if set, h_eos passes a learned linear map starting at this multiple of I.
        rope: rotary positions on queries and keys (head size must be even).
        pos_lr_mult: the position table's learning-rate multiplier under Adam (reparametrisation).
    """

    def __init__(
        self,
        d: int,
        n_heads: int,
        max_positions: int,
        mlp_ratio: float = 4.0,
        eps: float = 1e-6,
        pos_init_std: float = 0.02,
        *,
        input_norm_scale: float | None = None,
        input_proj_scale: float | None = None,
        rope: bool = False,
        pos_lr_mult: float = 1.0,
    ):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"decoder width {d} is not divisible by decoder_heads={n_heads}")
        if rope and (d // n_heads) % 2:
            raise ValueError(f"rotary positions need an even head size, got {d // n_heads}")
        self.d, self.n_heads = d, n_heads
        self.rope, self.pos_lr_mult = rope, pos_lr_mult
        self.pos = nn.Embedding(max_positions, d)  # theta; p_i = pos_lr_mult * theta_i
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
        self.eps = eps
        # Optional input conditioning, created only when asked for (default checkpoints keep their keys).
        self.in_scale = (
            None if input_norm_scale is None else nn.Parameter(torch.tensor(float(input_norm_scale)))
        )
        self.in_proj = None if input_proj_scale is None else nn.Linear(d, d, bias=False)
        self.input_proj_scale = input_proj_scale
        self.reset_parameters(pos_init_std=pos_init_std)

    @classmethod
    def from_llm(cls, hf: nn.Module, cfg: DecoderConfig, max_positions: int) -> TinyDecoder:
        """The tiny decoder of ``cfg`` sized for the Hugging Face causal LM ``hf`` (width d, heads), with
        ``max_positions`` positions; every scale it derives from the LLM is derived here:

        * positions start as large as token embeddings (std of the input embedding table), so rows can
          tell them apart, unless ``cfg.pos_init_std`` is set;
        * ``input_norm`` starts its scalar at the embedding table's RMS; ``input_proj`` starts at the
          identity times 1 (after input_norm) or embedding RMS / final-norm weight RMS;
        * ``output_norm_init='llm'`` starts the output norm at the LLM's final-norm weight.
        """
        text = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
        emb_weight = hf.get_input_embeddings().weight
        pos_init_std = full_stat(emb_weight, torch.std) if cfg.pos_init_std is None else cfg.pos_init_std
        emb_rms = full_stat(emb_weight, rms) if cfg.input_norm or cfg.input_proj else None
        proj_scale = None
        if cfg.input_proj:  # h_eos brought to the embeddings' scale (already there after input_norm)
            proj_scale = 1.0 if cfg.input_norm else emb_rms / rms(final_norm_weight(hf)).item()
        decoder = cls(
            text.hidden_size,
            cfg.heads or getattr(text, "num_attention_heads", 1),
            max_positions=max_positions,
            mlp_ratio=cfg.mlp_ratio,
            pos_init_std=pos_init_std,
            input_norm_scale=emb_rms if cfg.input_norm else None,
            input_proj_scale=proj_scale,
            rope=cfg.rope,
            pos_lr_mult=cfg.pos_lr_mult,
        )
        if cfg.output_norm_init == "llm":
            decoder.init_output_norm(final_norm_weight(hf))
        return decoder

    def reset_parameters(self, std: float = 0.02, pos_init_std: float = 0.02) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, nn.RMSNorm):
                nn.init.ones_(m.weight)
        nn.init.normal_(self.pos.weight, std=pos_init_std)
        if self.pos_lr_mult != 1.0:  # the same initial p_i whatever the multiplier
            with torch.no_grad():
                self.pos.weight.div_(self.pos_lr_mult)
        if self.in_proj is not None:  # a scaled identity: the decoder starts from h_eos itself
            with torch.no_grad():
                self.in_proj.weight.copy_(torch.eye(self.d) * self.input_proj_scale)

    def init_output_norm(self, weight: torch.Tensor) -> None:
        """Start the output norm at ``weight`` ``(d,)`` (the LLM's final-norm weight), so decoded rows
        have the scale the LLM's head was trained on."""
        with torch.no_grad():
            self.norm_out.weight.copy_(weight.detach().float().to(self.norm_out.weight.device))

    def positions(self, n: int, device: torch.device) -> torch.Tensor:
        """``(n, d)`` position embeddings ``p_0 .. p_{n-1}``, read through ``self.pos`` (a module call)."""
        p = self.pos(torch.arange(n, device=device))
        return p if self.pos_lr_mult == 1.0 else p * self.pos_lr_mult

    def condition(self, h_eos: torch.Tensor) -> torch.Tensor:
        """What the decoder sees of ``h_eos`` ``(B, d)``: itself by default, else rescaled/projected."""
        h = h_eos
        if self.in_scale is not None:
            h = F.rms_norm(h, (self.d,), eps=self.eps) * self.in_scale
        if self.in_proj is not None:
            h = self.in_proj(h)
        return h

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
        p = self.positions(N + 1, token_emb.device).to(dtype)  # (N+1, d)
        h = self.condition(h_eos.to(dtype))[:, None, :]  # (B, 1, d)
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
        if self.rope:  # row i and key j interact through i - j, whatever the size of h_eos
            q, k = rotary(q), rotary(k)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None])  # (B, nh, L, hd)
        x = h1 + self.wo(a.transpose(1, 2).reshape(B, L, d))  # residual on the query stream
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_out(x)


def full_stat(weight: torch.Tensor, stat: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """``stat`` of a whole weight, also when DeepSpeed ZeRO-3 has partitioned it (then gathered for
    the read; ``deepspeed.zero.Init`` leaves each process only its shard)."""
    if hasattr(weight, "ds_id"):  # a ZeRO-3 partitioned parameter
        import deepspeed

        with deepspeed.zero.GatheredParameters([weight]):
            return stat(weight.detach().float()).item()
    return stat(weight.detach().float()).item()


def rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean().sqrt()


FINAL_NORM_NAMES = ("norm", "ln_f", "final_layernorm", "norm_f")


def final_norm_weight(hf: nn.Module) -> torch.Tensor:
    """``(d,)`` effective scale of the LLM's final norm (Llama/Qwen ``model.norm``, GPT-2 ``ln_f``...).

    Gemma's RMSNorm multiplies by ``1 + weight``, so its effective scale is ``weight + 1``.
    """
    body = hf.get_decoder() if hasattr(hf, "get_decoder") else hf.base_model
    for name in FINAL_NORM_NAMES:
        norm = getattr(body, name, None)
        if norm is not None and getattr(norm, "weight", None) is not None:
            w = norm.weight.detach().float()
            return w + 1 if type(norm).__name__.startswith("Gemma") else w
    raise ValueError(f"cannot find the final norm of {type(hf).__name__} (looked for {FINAL_NORM_NAMES})")


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021) of ``x`` ``(B, nh, L, hd)`` at positions 0..L-1.

    Channel pairs ``(x_j, x_{j + hd/2})`` are rotated by ``pos * base^(-2j/hd)`` (the half-split layout
    of Llama's implementation); ``q_i . k_j`` then depends on positions only through ``i - j``.
    """
    L, hd = x.shape[-2], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd)  # (hd/2,)
    angle = torch.arange(L, device=x.device, dtype=torch.float32)[:, None] * inv_freq  # (L, hd/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
