"""Build what a run trains from its config: the LLM (optionally with LoRA) inside its objective.

Used by the training recipe and by :func:`unimae.training.trained.load_trained`, so a checkpoint is
always loaded into exactly the module that wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate.utils import set_seed

from unimae.encoding.loading import context_length, load_causal_lm
from unimae.objective.mntp import MNTP
from unimae.objective.model import UniMAE
from unimae.tokens import bos_id_if_added, eos_token_id, mask_token_id
from unimae.training.config import TrainConfig

@dataclass
class Setup:
    model: UniMAE | MNTP
    tokenizer: object
    eos_id: int
    bos_id: int | None


def build(cfg: TrainConfig) -> Setup:
    """The LLM (optionally with LoRA) wrapped in its objective (UniMAE: with a fresh tiny decoder)."""
    set_seed(cfg.seed)
    llm, tokenizer = load_causal_lm(cfg.model)
    context = context_length(llm)
    if context is not None and cfg.max_length > context:
        raise ValueError(f"max_length={cfg.max_length} exceeds the model's context of {context} tokens")
    if cfg.gradient_checkpointing:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )
        llm = get_peft_model(llm, lora)
    mask_id = mask_token_id(tokenizer, cfg.mask_token)
    head_bf16 = cfg.head_precision == "bf16"
    if cfg.objective == "mntp":
        model = MNTP(
            llm,
            mask_id,
            mask_ratio=cfg.mntp_mask_ratio,
            loss_chunk_size=cfg.loss_chunk_size,
            head_bf16=head_bf16,
            seed=cfg.seed,
        )
    else:
        model = UniMAE(
            llm,
            mask_id,
            mar_mask_ratio=cfg.mar_mask_ratio,
            mrc_mask_ratio=cfg.mrc_mask_ratio,
            alpha=cfg.alpha,
            mrc_weight=cfg.mrc_weight,
            mar_predict_eos=cfg.mar_predict_eos,
            max_length=cfg.max_length,
            decoder_heads=cfg.decoder_heads,
            decoder_mlp_ratio=cfg.decoder_mlp_ratio,
            decoder_share_embeddings=cfg.decoder_share_embeddings,
            decoder_pos_init_std=cfg.decoder_pos_init_std,
            loss_chunk_size=cfg.loss_chunk_size,
            head_bf16=head_bf16,
            seed=cfg.seed,
        )
    return Setup(model, tokenizer, eos_token_id(tokenizer, cfg.eos_token), bos_id_if_added(tokenizer))


def make_optimizer(model: UniMAE | MNTP, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the objective's named groups: ``llm`` at ``lr``, the tiny ``decoder`` (from scratch)
    at ``decoder_lr``. Empty groups (MNTP has no decoder) are left out."""
    lrs = {"llm": cfg.lr, "decoder": cfg.decoder_lr}
    groups = [{"params": params, "lr": lrs[name]} for name, params in model.param_groups().items() if params]
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
