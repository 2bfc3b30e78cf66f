"""Build what a run trains from its config: the LLM (optionally with LoRA) inside its objective.

Used by the training recipe and by :func:`unimae.training.trained.load_trained`, so a checkpoint is
always loaded into exactly the module that wrote it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from accelerate.utils import set_seed
from torch import nn

from unimae.encoding.loading import context_length, load_causal_lm
from unimae.llm import require_mask_honouring_attention, unwrap_causal_lm
from unimae.objective.losses import LOGIT_BUDGET_BYTES, auto_logit_bytes, resolve_chunk_size
from unimae.objective.mntp import MNTP
from unimae.objective.model import UniMAE
from unimae.tokens import bos_id_if_added, eos_token_id, mask_token_id
from unimae.training.config import ConfigError, TrainConfig
from unimae.training.lora import use_low_memory_lora

log = logging.getLogger(__name__)


@dataclass
class Setup:
    model: UniMAE | MNTP
    tokenizer: object
    eos_id: int
    bos_id: int | None


def build(cfg: TrainConfig) -> Setup:
    """The LLM (optionally with LoRA) wrapped in its objective (UniMAE: with a fresh tiny decoder).

    The LLM is loaded in ``cfg.model_dtype``; every trainable parameter (LoRA adapters, the tiny
    decoder, or the whole LLM in a full fine-tune, which the config allows only in fp32) is fp32.
    """
    set_seed(cfg.seed)
    llm, tokenizer = load_causal_lm(cfg.model, dtype=cfg.model_dtype)
    context = context_length(llm)
    if context is not None and cfg.data.max_length > context:
        raise ValueError(
            f"data.max_length={cfg.data.max_length} exceeds the model's context of {context} tokens"
        )
    if cfg.objective.name == "mntp":
        require_mask_honouring_attention(llm, "objective mntp")
    if cfg.gradient_checkpointing:
        # Non-reentrant: works under DDP/FSDP and with frozen inputs (LoRA) without enable_input_require_grads.
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora.enabled:
        llm = with_lora(llm, cfg)
    logit_bytes = auto_logit_bytes(cfg.model_dtype)
    chunk = resolve_chunk_size(cfg.objective.loss_chunk_size, vocab_size(llm), logit_bytes)
    if cfg.objective.loss_chunk_size < 0:
        log.info(
            "loss_chunk_size auto: vocabulary logits at most %d target tokens at a time (vocabulary %d, "
            "%d bytes a logit in a %s model, <= %d MiB); set loss_chunk_size to override",
            chunk,
            vocab_size(llm),
            logit_bytes,
            cfg.model_dtype,
            LOGIT_BUDGET_BYTES // 2**20,
        )
    model = make_objective(cfg, llm, mask_token_id(tokenizer, cfg.objective.mask_token), chunk)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:  # peft casts adapters already; be sure
            p.data = p.data.float()
    return Setup(
        model, tokenizer, eos_token_id(tokenizer, cfg.objective.eos_token), bos_id_if_added(tokenizer)
    )


def linear_module_names(model: nn.Module) -> list[str]:
    """The distinct last names of ``model``'s Linear (and GPT-2 Conv1D) layers: what LoRA can target."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
    }
    return sorted(names)


def with_lora(llm: nn.Module, cfg: TrainConfig) -> nn.Module:
    """``llm`` with trainable LoRA adapters (fp32, whatever the base weights' dtype) on frozen weights.

    Over bf16/fp16 weights each adapter's down-projection runs as :class:`unimae.training.lora.LoraDown`
    (the same parameters and numbers, without fp32 copies of its input kept for backward).
    """
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        llm = get_peft_model(llm, lora, autocast_adapter_dtype=True)
    except ValueError as e:  # peft's NoMatchingPeftModuleError: a module name the model does not have
        if "not found in the base model" not in str(e):
            raise
        raise ConfigError(
            f"lora.target_modules={cfg.lora.target_modules!r}: {str(e).splitlines()[0]} "
            f"(this {type(llm).__name__} has: {', '.join(linear_module_names(llm))})"
        ) from None
    if cfg.model_dtype != "fp32":
        # fp32 adapters over bf16/fp16 weights: peft would keep fp32 copies of every adapted layer's input
        # (training/lora.py). fp32 models keep peft's own path (and the golden losses).
        log.info("low-memory LoRA path: %d adapters", use_low_memory_lora(llm))
    return llm


def vocab_size(llm: nn.Module) -> int:
    """Rows of the LLM's vocabulary head (read from the module, so also right under ZeRO-3 partitioning)."""
    hf = unwrap_causal_lm(llm)
    head = hf.get_output_embeddings()
    return getattr(head, "out_features", None) or hf.config.get_text_config().vocab_size


def make_objective(cfg: TrainConfig, llm: nn.Module, mask_id: int, loss_chunk_size: int) -> UniMAE | MNTP:
    """The configured objective around ``llm`` (``loss_chunk_size`` resolved: no -1)."""
    if cfg.objective.name == "mntp":
        return MNTP(
            llm,
            mask_id,
            mask_ratio=cfg.objective.mntp_mask_ratio,
            loss_chunk_size=loss_chunk_size,
            head_bf16=cfg.objective.head_bf16,
            seed=cfg.seed,
        )
    return UniMAE(
        llm,
        mask_id,
        cfg.objective,
        cfg.decoder,
        cfg.contrastive,
        cfg.distill,
        max_length=cfg.data.max_length,
        loss_chunk_size=loss_chunk_size,
        seed=cfg.seed,
    )


def make_optimizer(model: UniMAE | MNTP, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the objective's named groups: ``llm`` at ``lr``, the tiny ``decoder`` (from scratch)
    at ``decoder_lr``. Empty groups (MNTP has no decoder) are left out."""
    lrs = {"llm": cfg.optim.lr, "decoder": cfg.optim.decoder_lr}
    groups = [{"params": params, "lr": lrs[name]} for name, params in model.param_groups().items() if params]
    return torch.optim.AdamW(groups, weight_decay=cfg.optim.weight_decay)
