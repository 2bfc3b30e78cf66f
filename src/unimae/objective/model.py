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
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from unimae.llm import last_hidden_states, unwrap_causal_lm
from unimae.objective.config import ContrastiveConfig, DecoderConfig, DistillConfig, ObjectiveConfig
from unimae.objective.contrastive import distill_loss, symmetric_info_nce
from unimae.objective.decoder import TinyDecoder
from unimae.objective.losses import IGNORE, TokenLoss, mar_loss, mrc_loss
from unimae.objective.masking import example_keys, mar_mask, mrc_visibility, second_keys
from unimae.spec import EmbeddingSpec


@dataclass
class TrainOutput:
    """What a training objective returns: the loss that is trained and its token-loss terms."""

    loss: torch.Tensor  # scalar: sum_n weight_n * (summed token losses of term n) / target count_n
    terms: dict[str, TokenLoss]  # e.g. {"mar": ..., "mrc": ...}
    weights: dict[str, float]
    h_eos: torch.Tensor | None = None  # (B, d)
    # Diagnostics as (sum, count) pairs, summed over micro-batches and processes like the losses:
    # the logged value is sum / count (e.g. "h_eos_norm": (sum of ||h_eos||, texts)).
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)

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

    Only when a term on the read state is trained (contrastive view 'read', distillation):
    read_ids, read_mask: ``(B, L')`` the clean text in the template the export records, ``[BOS]? prefix x
                   suffix EOS pad..`` (the layout ``Encoder`` embeds)
    read_eos:      ``(B,)`` position of its EOS
    teacher:       ``(B, d_t)`` the distillation target of each text
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    content_mask: torch.Tensor
    eos_index: torch.Tensor
    example_ids: torch.Tensor
    read_ids: torch.Tensor | None = None
    read_mask: torch.Tensor | None = None
    read_eos: torch.Tensor | None = None
    teacher: torch.Tensor | None = None

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> UniMAEBatch:
        """The same batch with ``fn`` applied to every tensor (absent ones stay None)."""
        values = (getattr(self, f.name) for f in fields(self))
        return UniMAEBatch(*(None if v is None else fn(v) for v in values))

    def to(self, device) -> UniMAEBatch:
        return self._map(lambda t: t.to(device))

    def slice(self, start: int, stop: int) -> UniMAEBatch:
        return self._map(lambda t: t[start:stop])

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def text_only(self, n_prefix: int, n_suffix: int) -> UniMAEBatch:
        """The same batch with ``content_mask`` narrowed to the text inside a prompt: of the tokens
        between BOS and EOS, the first ``n_prefix`` and the last ``n_suffix`` are the prompt's (context,
        never MAR or MRC targets)."""
        pos = torch.arange(self.input_ids.shape[1], device=self.input_ids.device)[None, :]
        rank = self.content_mask.long().cumsum(1)  # 1 at the first token after BOS
        text = self.content_mask & (rank > n_prefix) & (pos < (self.eos_index - n_suffix)[:, None])
        return dataclasses.replace(self, content_mask=text)


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
        cfg: the objective section (mask ratios, loss weights, EOS target, prompt, head precision).
        decoder: the tiny decoder's section (``TinyDecoder.from_llm`` sizes it from the LLM).
        contrastive, distill: terms on the embedding state beyond the paper (contrastive.py); off at weight 0.
        max_length: longest training sequence (sizes the decoder's position table).
        loss_chunk_size: vocabulary-logit chunk in target tokens, resolved (0: all at once).
        seed: keys the random masks (with the step and example ids).
    """

    def __init__(
        self,
        llm: nn.Module,
        mask_token_id: int,
        cfg: ObjectiveConfig | None = None,
        decoder: DecoderConfig | None = None,
        contrastive: ContrastiveConfig | None = None,
        distill: DistillConfig | None = None,
        *,
        max_length: int = 512,
        loss_chunk_size: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.llm, self.mask_token_id = llm, mask_token_id
        self.cfg = cfg or ObjectiveConfig()
        self.loss_chunk_size, self.seed = loss_chunk_size, seed
        decoder = decoder or DecoderConfig()
        self.decoder = TinyDecoder.from_llm(self.hf, decoder, max_positions=max_length + 1)
        self.dec_embed, self.dec_head = None, None  # shared with the LLM (as RetroMAE)
        if not decoder.share_embeddings:  # own copies, initialised from the LLM's; trained, so fp32
            self.dec_embed = copy.deepcopy(self.hf.get_input_embeddings()).float()
            self.dec_head = copy.deepcopy(self.hf.get_output_embeddings()).float()
        self.contrastive, self.distill = contrastive or ContrastiveConfig(), distill or DistillConfig()
        self.log_temperature, self.distill_head = extra_parameters(self.hf, self.contrastive, self.distill)

    # --- the pieces -------------------------------------------------------------------------------

    @property
    def find_unused_parameters(self) -> bool:
        """Whether DDP must expect parameters without gradients: the tiny decoder when MRC is off."""
        return self.cfg.mrc_weight == 0

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimizer group: ``llm`` (all weights or LoRA adapters) and ``decoder``
        (the tiny decoder and its own embeddings, trained from scratch)."""
        in_llm = {id(p) for p in self.llm.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        return {
            "llm": [p for p in trainable if id(p) in in_llm],
            "decoder": [p for p in trainable if id(p) not in in_llm],
        }

    def embedding_spec(self, **fields) -> EmbeddingSpec:
        """How a UniMAE-trained LLM embeds: the last-layer state of the appended EOS, causal attention,
        the text in the prompt it was trained with (if any).

        fields: the rest of the record (eos_token, max_length, steps...).
        """
        return EmbeddingSpec(pooling="eos", attention="causal", prompt=self.cfg.prompt, **fields)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """LLM vocabulary head: ``(T, d) -> (T, V)``."""
        return in_dtype_of(self.hf.get_output_embeddings())(h)

    def forward_decoder(
        self, h_eos: torch.Tensor, batch: UniMAEBatch, keys: torch.Tensor, stats: dict | None = None
    ) -> TokenLoss:
        """Masked reconstruction of the clean text from ``h_eos`` (B, d) through the tiny decoder.

        stats: if given, gets the decoder's diagnostics (see :func:`decoder_stats`).
        """
        embed = self.dec_embed if self.dec_embed is not None else self.hf.get_input_embeddings()
        head = self.dec_head if self.dec_head is not None else self.hf.get_output_embeddings()
        token_emb = embed(batch.input_ids)  # (B, L, d) e(x) of the CLEAN tokens
        slot0 = batch.content_mask.new_ones((len(batch), 1))
        key_valid = torch.cat([slot0, batch.content_mask], dim=1)  # (B, L+1); slot 0 is h_eos
        visible = mrc_visibility(keys, key_valid, self.cfg.mrc_mask_ratio)  # (B, L+1, L+1)
        decoded = self.decoder(h_eos, token_emb, visible)  # (B, L+1, d)
        targets = batch.input_ids.masked_fill(~batch.content_mask, IGNORE)  # row i predicts x_i
        targets = torch.cat([targets.new_full((len(batch), 1), IGNORE), targets], dim=1)  # (B, L+1)
        if stats is not None:
            stats.update(
                decoder_stats(decoded, targets, self.decoder.positions(targets.shape[1], h_eos.device))
            )
        return mrc_loss(decoded, targets, in_dtype_of(head), self.loss_chunk_size, self.cfg.head_bf16)

    # --- the method ---------------------------------------------------------------------------------

    def target_counts(self, batch: UniMAEBatch, step: int) -> dict[str, int]:
        """Target tokens of each active loss term (to normalise losses over a global batch)."""
        counts = {}
        if self.cfg.alpha > 0:
            counts["mar"] = int(
                mar_target_mask(batch, self.cfg.mar_predict_eos)[:, 1:].sum()
            )  # position 0 is never predicted
        if self.cfg.mrc_weight > 0:
            counts["mrc"] = int(batch.content_mask.sum())
        if self.contrastive.weight > 0:
            counts["contrastive"] = 2 * len(batch)  # both directions of every text
        if self.distill.weight > 0:
            counts["distill"] = len(batch)
        return counts

    def forward(self, batch: UniMAEBatch, step: int, counts: dict[str, int] | None = None) -> TrainOutput:
        """The trained loss ``alpha * L_MAR + mrc_weight * L_MRC`` of ``batch`` at optimizer step ``step``.

        counts: ``target_counts`` of the global batch this one is a slice of (None: of this batch).
        """
        keys = example_keys(self.seed, step, batch.example_ids)  # (B,)
        masked = mar_mask(keys, batch.content_mask, self.cfg.mar_mask_ratio)  # (B, L) 1 = replace
        x_tilde = batch.input_ids.masked_fill(masked, self.mask_token_id)
        hidden = last_hidden_states(self.llm, x_tilde, batch.attention_mask)  # (B, L, d)
        h_eos = hidden[torch.arange(len(batch), device=hidden.device), batch.eos_index]  # (B, d)

        terms, weights = {}, {}
        stats = {"h_eos_norm": _per_text(h_eos.detach().float().norm(dim=-1))}
        if self.cfg.alpha > 0:
            target_mask = mar_target_mask(batch, self.cfg.mar_predict_eos)
            terms["mar"] = mar_loss(
                hidden, batch.input_ids, target_mask, self.head, self.loss_chunk_size, self.cfg.head_bf16
            )
            weights["mar"] = self.cfg.alpha
        if self.cfg.mrc_weight > 0:
            terms["mrc"] = self.forward_decoder(h_eos, batch, keys, stats)
            weights["mrc"] = self.cfg.mrc_weight
        self.forward_embedding_terms(h_eos, batch, step, terms, weights)
        return TrainOutput(weighted_loss(terms, weights, counts), terms, weights, h_eos, stats)

    # --- beyond the paper: terms on the embedding state (contrastive.py; off by default) ----------------

    def forward_embedding_terms(
        self, h_eos: torch.Tensor, batch: UniMAEBatch, step: int, terms: dict, weights: dict
    ) -> None:
        """Add the contrastive and distillation terms (those with weight > 0) to ``terms``/``weights``."""
        c, t = self.contrastive, self.distill
        needs_read = (c.weight > 0 and c.view == "read") or t.weight > 0
        h_read = self.read_state(batch) if needs_read else None  # (B, d) the state that is embedded
        if c.weight > 0:
            other = h_read if c.view == "read" else self.second_masked_state(batch, step)
            terms["contrastive"] = symmetric_info_nce(h_eos, other, self.temperature())
            weights["contrastive"] = c.weight
        if t.weight > 0:
            student = h_read if self.distill_head is None else self.distill_head(h_read)
            terms["distill"] = distill_loss(student, batch.teacher, t.loss)
            weights["distill"] = t.weight

    def read_state(self, batch: UniMAEBatch) -> torch.Tensor:
        """``(B, d)`` last-layer EOS state of the clean text in the read template (as ``Encoder`` embeds)."""
        if batch.read_ids is None:
            raise ValueError("this objective trains the read state: the batch needs read_ids (training.data)")
        hidden = last_hidden_states(self.llm, batch.read_ids, batch.read_mask)  # (B, L', d)
        return hidden[torch.arange(len(batch), device=hidden.device), batch.read_eos]

    def second_masked_state(self, batch: UniMAEBatch, step: int) -> torch.Tensor:
        """``(B, d)`` EOS state of the training input under a second MAR mask, drawn independently of the
        first (``masking.second_keys``)."""
        keys = second_keys(example_keys(self.seed, step, batch.example_ids))
        masked = mar_mask(keys, batch.content_mask, self.cfg.mar_mask_ratio)
        hidden = last_hidden_states(
            self.llm, batch.input_ids.masked_fill(masked, self.mask_token_id), batch.attention_mask
        )
        return hidden[torch.arange(len(batch), device=hidden.device), batch.eos_index]

    def temperature(self) -> torch.Tensor | float:
        if self.log_temperature is None:
            return self.contrastive.temperature
        return self.log_temperature.exp()


def extra_parameters(
    hf: nn.Module, contrastive: ContrastiveConfig, distill: DistillConfig
) -> tuple[nn.Parameter | None, nn.Linear | None]:
    """The training-only parameters of the terms beyond the paper (dropped by the export, trained at
    ``decoder_lr``): a learned log-temperature, and distillation's d x d head (identity at start)."""
    log_t = None
    if contrastive.weight > 0 and contrastive.learn_temperature:
        log_t = nn.Parameter(torch.tensor(math.log(contrastive.temperature)))
    head = None
    if distill.weight > 0 and distill.head:
        d = hf.get_input_embeddings().weight.shape[1]
        head = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.eye(d))
    return log_t, head


# --- diagnostics ------------------------------------------------------------------------------------


def _per_text(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum, count)`` of per-text values ``(B,)``: their mean once summed over micro-batches."""
    return values.sum(), values.new_tensor(values.numel(), dtype=torch.long)


def most_frequent_token_hits(targets: torch.Tensor) -> torch.Tensor:
    """Targets ``(B, T)`` (-100 = none) that a guess of each row's most frequent target token gets right
    (summed over rows): the accuracy a bag-of-words reconstruction reaches without any order."""
    hits = targets.new_zeros(())
    for row in targets:
        row = row[row != IGNORE]
        if row.numel():
            hits = hits + torch.unique(row, return_counts=True)[1].max()
    return hits


@torch.no_grad()
def decoder_stats(
    decoded: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The tiny decoder's diagnostics as ``(sum, count)`` pairs (issue 14: "is MRC a bag of words?").

    decoded: ``(B, L, d)`` decoder outputs; targets: ``(B, L)`` token targets, -100 where none;
    positions: ``(L, d)`` the position embeddings in use.

    * ``mrc_acc_mft``: accuracy of predicting each text's most frequent token at every target (the
      baseline ``mrc_acc`` must beat by far if rows use their positions);
    * ``mrc_row_cos``: mean pairwise cosine of a text's target rows (near 1: every row says the same);
    * ``pos_norm``: mean ``||p_i||`` of the positions in use.
    """
    keep = (targets != IGNORE).to(decoded.dtype)[..., None]  # (B, L, 1)
    unit = F.normalize(decoded.float(), dim=-1) * keep
    rows = keep.sum((1, 2))  # (B,)
    total = unit.sum(1).pow(2).sum(-1)  # ||sum_i u_i||^2 = R + sum_{i != j} cos_ij
    pairs = rows * (rows - 1)
    many = pairs > 0
    cos = (total - rows)[many] / pairs[many]
    n_pos = positions.float().norm(dim=-1).mean().expand(decoded.shape[0])
    return {
        "mrc_acc_mft": (most_frequent_token_hits(targets), (targets != IGNORE).sum()),
        "mrc_row_cos": _per_text(cos),
        "pos_norm": _per_text(n_pos),
    }
