"""UniMAE: a causal LLM trained as a masked auto-encoder, read top to bottom like the paper.

mask -> LLM (causal, unchanged) -> L_MAR and h_eos -> tiny decoder -> L_MRC
L = alpha * L_MAR + mrc_weight * L_MRC

An objective (UniMAE here, MNTP in mntp.py) is all a training loop needs to know about the method:
``forward(batch, step, counts)`` returns the loss that is trained, ``target_counts`` the normalisers of
a global batch, ``param_groups`` its named optimizer groups, ``find_unused_parameters`` what DDP must
expect, and ``embedding_spec`` how the trained model embeds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import nn

from unimae.llm import last_hidden_states, unwrap_causal_lm
from unimae.objective.decoder import TinyDecoder
from unimae.objective.losses import IGNORE, TokenLoss, mar_loss, mrc_loss
from unimae.objective.masking import example_keys, mar_mask, mrc_visibility
from unimae.spec import EmbeddingSpec


@dataclass
class TrainOutput:
    """What a training objective returns: the loss that is trained and its token-loss terms."""

    loss: torch.Tensor  # scalar: sum_n weight_n * (summed token losses of term n) / target count_n
    terms: dict[str, TokenLoss]  # e.g. {"mar": ..., "mrc": ...}
    weights: dict[str, float]
    h_eos: torch.Tensor | None = None  # (B, d)

    @property
    def mar(self) -> TokenLoss | None:
        return self.terms.get("mar")

    @property
    def mrc(self) -> TokenLoss | None:
        return self.terms.get("mrc")


@dataclass
class UniMAEBatch:
    """A training batch (right padded).

    input_ids:     ``(B, L)`` clean ids ``[BOS]? x_1..x_N EOS pad..``
    attention_mask:``(B, L)`` 1 for real tokens (text, BOS and EOS)
    content_mask:  ``(B, L)`` bool, True for text tokens x_1..x_N only
    eos_index:     ``(B,)`` position of the appended EOS
    example_ids:   ``(B,)`` dataset index of each example (keys the random masks)
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    content_mask: torch.Tensor
    eos_index: torch.Tensor
    example_ids: torch.Tensor

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> UniMAEBatch:
        """The same batch with ``fn`` applied to every tensor."""
        return UniMAEBatch(*(fn(getattr(self, f.name)) for f in fields(self)))

    def to(self, device) -> UniMAEBatch:
        return self._map(lambda t: t.to(device))

    def slice(self, start: int, stop: int) -> UniMAEBatch:
        return self._map(lambda t: t[start:stop])

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def weighted_loss(
    terms: dict[str, TokenLoss], weights: dict[str, float], counts: dict[str, int] | None
) -> torch.Tensor:
    """``sum_n w_n * S_n / N_n``: each term's summed token losses ``S_n`` over its target count ``N_n``.

    counts: target tokens of each term in the GLOBAL batch (all processes and accumulation
    micro-batches), so the micro-batch losses add up to the mean token loss of the whole batch. None:
    this batch's own counts (a single process with the whole batch: the per-batch token mean).
    """

    def count(name: str) -> torch.Tensor | int:
        return terms[name].count.clamp(min=1) if counts is None else max(counts[name], 1)

    return sum(weights[n] * terms[n].sum / count(n) for n in sorted(terms))


def in_dtype_of(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module`` called on its input cast to the module's dtype: the fp32 tiny decoder's rows reach a
    bf16 LLM's head (``model_dtype: bf16``) without a dtype mismatch. A no-op when the dtypes agree."""
    dtype = next(module.parameters()).dtype
    return lambda h: module(h.to(dtype))


def full_std(weight: torch.Tensor) -> float:
    """Standard deviation of a whole weight, also when DeepSpeed ZeRO-3 has partitioned it (then
    gathered for the read; ``deepspeed.zero.Init`` leaves each process only its shard)."""
    if hasattr(weight, "ds_id"):  # a ZeRO-3 partitioned parameter
        import deepspeed

        with deepspeed.zero.GatheredParameters([weight]):
            return weight.detach().float().std().item()
    return weight.detach().float().std().item()


def mar_target_mask(batch: UniMAEBatch, predict_eos: bool) -> torch.Tensor:
    """``(B, L)`` bool: tokens that MAR must predict (the text, plus the appended EOS if predict_eos)."""
    target_mask = batch.content_mask.clone()
    if predict_eos:
        target_mask[torch.arange(len(batch), device=target_mask.device), batch.eos_index] = True
    return target_mask


class LLMObjective(nn.Module):
    """What every training objective shares: the wrapped LLM (``self.llm``, maybe a peft model)."""

    @property
    def hf(self) -> nn.Module:
        """The Hugging Face ``*ForCausalLM`` inside any peft wrapper."""
        return unwrap_causal_lm(self.llm)

    @property
    def _no_split_modules(self) -> list[str] | None:
        """The LLM's transformer-layer classes: FSDP's transformer-based auto-wrap shards one per layer."""
        return getattr(self.hf, "_no_split_modules", None)


class UniMAE(LLMObjective):
    """The LLM plus the training-only tiny decoder.

    Args:
        llm: a Hugging Face causal LM (optionally wrapped by peft).
        mask_token_id: id that replaces masked MAR inputs.
        mar_mask_ratio, mrc_mask_ratio, alpha, mrc_weight, mar_predict_eos: see TrainConfig.
        max_length: longest training sequence (sizes the decoder's position table).
    """

    def __init__(
        self,
        llm: nn.Module,
        mask_token_id: int,
        *,
        mar_mask_ratio: float = 0.5,
        mrc_mask_ratio: float = 0.5,
        alpha: float = 1.0,
        mrc_weight: float = 1.0,
        mar_predict_eos: bool = True,
        max_length: int = 512,
        decoder_heads: int | None = None,
        decoder_mlp_ratio: float = 4.0,
        decoder_share_embeddings: bool = True,
        decoder_pos_init_std: float | None = None,
        loss_chunk_size: int = 0,
        head_bf16: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.llm = llm
        self.mask_token_id = mask_token_id
        self.mar_mask_ratio, self.mrc_mask_ratio = mar_mask_ratio, mrc_mask_ratio
        self.alpha, self.mrc_weight = alpha, mrc_weight
        self.mar_predict_eos = mar_predict_eos
        self.loss_chunk_size = loss_chunk_size
        self.head_bf16 = head_bf16
        self.seed = seed
        hf = unwrap_causal_lm(llm)
        cfg = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
        d = cfg.hidden_size
        heads = decoder_heads or getattr(cfg, "num_attention_heads", 1)
        if (
            decoder_pos_init_std is None
        ):  # positions as large as token embeddings, so rows can tell them apart
            decoder_pos_init_std = full_std(hf.get_input_embeddings().weight)
        self.decoder = TinyDecoder(
            d,
            heads,
            max_positions=max_length + 1,
            mlp_ratio=decoder_mlp_ratio,
            pos_init_std=decoder_pos_init_std,
        )
        if decoder_share_embeddings:
            self.dec_embed, self.dec_head = None, None
        else:  # the decoder's own copies, initialised from the LLM's; trained, so fp32 over a bf16 LLM
            self.dec_embed = copy.deepcopy(hf.get_input_embeddings()).float()
            self.dec_head = copy.deepcopy(hf.get_output_embeddings()).float()

    # --- the pieces -------------------------------------------------------------------------------

    @property
    def find_unused_parameters(self) -> bool:
        """Whether DDP must expect parameters without gradients: the tiny decoder when MRC is off."""
        return self.mrc_weight == 0

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimizer group: ``llm`` (all weights or LoRA adapters) and ``decoder``
        (the tiny decoder and its own embeddings, trained from scratch)."""
        in_llm = {id(p) for p in self.llm.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        return {
            "llm": [p for p in trainable if id(p) in in_llm],
            "decoder": [p for p in trainable if id(p) not in in_llm],
        }

    @classmethod
    def embedding_spec(cls, **fields) -> EmbeddingSpec:
        """How a UniMAE-trained LLM embeds: the last-layer state of the appended EOS, causal attention.

        fields: the rest of the record (eos_token, max_length, steps...).
        """
        return EmbeddingSpec(pooling="eos", attention="causal", **fields)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """LLM vocabulary head: ``(T, d) -> (T, V)``."""
        return in_dtype_of(self.hf.get_output_embeddings())(h)

    def forward_decoder(self, h_eos: torch.Tensor, batch: UniMAEBatch, keys: torch.Tensor) -> TokenLoss:
        """Masked reconstruction of the clean text from ``h_eos`` (B, d) through the tiny decoder."""
        embed = self.dec_embed if self.dec_embed is not None else self.hf.get_input_embeddings()
        head = self.dec_head if self.dec_head is not None else self.hf.get_output_embeddings()
        token_emb = embed(batch.input_ids)  # (B, L, d) e(x) of the CLEAN tokens
        slot0 = batch.content_mask.new_ones((len(batch), 1))
        key_valid = torch.cat([slot0, batch.content_mask], dim=1)  # (B, L+1); slot 0 is h_eos
        visible = mrc_visibility(keys, key_valid, self.mrc_mask_ratio)  # (B, L+1, L+1)
        decoded = self.decoder(h_eos, token_emb, visible)  # (B, L+1, d)
        targets = batch.input_ids.masked_fill(~batch.content_mask, IGNORE)  # row i predicts x_i
        targets = torch.cat([targets.new_full((len(batch), 1), IGNORE), targets], dim=1)  # (B, L+1)
        return mrc_loss(decoded, targets, in_dtype_of(head), self.loss_chunk_size, self.head_bf16)

    # --- the method ---------------------------------------------------------------------------------

    def target_counts(self, batch: UniMAEBatch, step: int) -> dict[str, int]:
        """Target tokens of each active loss term (to normalise losses over a global batch)."""
        counts = {}
        if self.alpha > 0:
            counts["mar"] = int(
                mar_target_mask(batch, self.mar_predict_eos)[:, 1:].sum()
            )  # position 0 is never predicted
        if self.mrc_weight > 0:
            counts["mrc"] = int(batch.content_mask.sum())
        return counts

    def forward(self, batch: UniMAEBatch, step: int, counts: dict[str, int] | None = None) -> TrainOutput:
        """The trained loss ``alpha * L_MAR + mrc_weight * L_MRC`` of ``batch`` at optimizer step ``step``.

        counts: ``target_counts`` of the global batch this one is a slice of (None: of this batch).
        """
        keys = example_keys(self.seed, step, batch.example_ids)  # (B,)
        masked = mar_mask(keys, batch.content_mask, self.mar_mask_ratio)  # (B, L) 1 = replace
        x_tilde = batch.input_ids.masked_fill(masked, self.mask_token_id)
        hidden = last_hidden_states(self.llm, x_tilde, batch.attention_mask)  # (B, L, d)
        h_eos = hidden[torch.arange(len(batch), device=hidden.device), batch.eos_index]  # (B, d)

        terms, weights = {}, {}
        if self.alpha > 0:
            target_mask = mar_target_mask(batch, self.mar_predict_eos)
            terms["mar"] = mar_loss(
                hidden, batch.input_ids, target_mask, self.head, self.loss_chunk_size, self.head_bf16
            )
            weights["mar"] = self.alpha
        if self.mrc_weight > 0:
            terms["mrc"] = self.forward_decoder(h_eos, batch, keys)
            weights["mrc"] = self.mrc_weight
        return TrainOutput(weighted_loss(terms, weights, counts), terms, weights, h_eos)
