"""MNTP baseline (LLM2Vec, BehnamGhader et al. 2024): bidirectional attention + masked next-token prediction.

The LLM's causal mask is replaced by a bidirectional one (every real token sees every real token),
a fraction ``mntp_mask_ratio`` (20%) of the text tokens is replaced by the mask token, and each masked
token ``x_t`` is predicted from the state at ``t - 1`` (the position whose head predicts token t in
a causal LM). Embeddings are mean-pooled over the text with the same bidirectional attention.
"""

from __future__ import annotations

import torch
from torch import nn

from unimae.llm import bidirectional_mask, last_hidden_states
from unimae.objective.losses import IGNORE, next_token_targets, token_cross_entropy
from unimae.objective.masking import example_keys, mar_mask
from unimae.objective.model import LLMObjective, TrainOutput, UniMAEBatch, weighted_loss
from unimae.spec import EmbeddingSpec


def mntp_targets(input_ids: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` targets: position t - 1 predicts the original token at a masked position t; -100 elsewhere."""
    return next_token_targets(input_ids.masked_fill(~masked, IGNORE))


class MNTP(LLMObjective):
    """The LLM trained with bidirectional attention on masked next-token prediction."""

    def __init__(
        self,
        llm: nn.Module,
        mask_token_id: int,
        *,
        mask_ratio: float = 0.2,
        loss_chunk_size: int = 0,
        head_bf16: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.llm, self.mask_token_id, self.mask_ratio = llm, mask_token_id, mask_ratio
        self.loss_chunk_size, self.head_bf16, self.seed = loss_chunk_size, head_bf16, seed

    find_unused_parameters = False  # every trainable parameter is in the LLM, which always runs

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimizer group: only ``llm`` (all weights or LoRA adapters)."""
        return {"llm": [p for p in self.llm.parameters() if p.requires_grad]}

    @classmethod
    def embedding_spec(cls, **fields) -> EmbeddingSpec:
        """How an MNTP-trained LLM embeds: mean pooling over the text with bidirectional attention
        (as it was trained; LLM2Vec). fields: the rest of the record (eos_token, max_length, steps...)."""
        return EmbeddingSpec(pooling="mean", attention="bidirectional", **fields)

    def masked_positions(self, batch: UniMAEBatch, step: int) -> torch.Tensor:
        keys = example_keys(self.seed, step, batch.example_ids)
        # never the first token: there is no earlier state to predict it from
        maskable = batch.content_mask.clone()
        maskable[:, 0] = False
        return mar_mask(keys, maskable, self.mask_ratio)

    def target_counts(self, batch: UniMAEBatch, step: int) -> dict[str, int]:
        return {"mntp": int(self.masked_positions(batch, step).sum())}

    def forward(self, batch: UniMAEBatch, step: int, counts: dict[str, int] | None = None) -> TrainOutput:
        """The trained loss L_MNTP of ``batch`` at step ``step`` (counts: as ``UniMAE.forward``)."""
        masked = self.masked_positions(batch, step)  # (B, L)
        x_tilde = batch.input_ids.masked_fill(masked, self.mask_token_id)
        dtype = self.hf.get_input_embeddings().weight.dtype
        attention = bidirectional_mask(batch.attention_mask, dtype)  # (B, 1, L, L)
        hidden = last_hidden_states(self.llm, x_tilde, batch.attention_mask, attention)  # (B, L, d)
        head = self.hf.get_output_embeddings()
        mntp = token_cross_entropy(
            hidden, mntp_targets(batch.input_ids, masked), head, self.loss_chunk_size, self.head_bf16
        )
        terms, weights = {"mntp": mntp}, {"mntp": 1.0}
        return TrainOutput(weighted_loss(terms, weights, counts), terms, weights)
