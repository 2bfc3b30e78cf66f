"""A trained run as a plain causal LM: the one way from a run folder to weights that embed and generate.

``load_trained(run_dir)`` rebuilds the run's objective from its ``config.yaml``, loads the latest
checkpoint after verifying its manifest, merges LoRA adapters, drops the training-only tiny decoder,
and says how the model embeds (the objective's :class:`~unimae.spec.EmbeddingSpec`). Every export
format starts here, so an export reads the checkpoint the same way however the run was trained.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from unimae.spec import EmbeddingSpec
from unimae.training.build import build
from unimae.training.checkpoint import (
    CheckpointError,
    check_step,
    find_checkpoint,
    load_model_state,
    verify_checkpoint,
)
from unimae.training.config import load_config


def load_trained(run_dir: str | Path) -> tuple[nn.Module, object, EmbeddingSpec]:
    """``(llm, tokenizer, spec)`` of a run folder's latest verified checkpoint.

    llm: the Hugging Face ``*ForCausalLM`` with LoRA merged, in eval mode, on CPU; tokenizer: the run's;
    spec: pooling/attention from the objective, the EOS token appended in training, BOS use, max_length,
    trained_from, objective and steps; its prompt is the config's ``encode_prompt`` where set. Raises
    :class:`CheckpointError` (a ``UserError``) naming the file when the run has no checkpoint or a
    checkpoint file does not match its manifest.
    """
    run_dir = Path(run_dir)
    ckpt = find_checkpoint(run_dir)
    config = run_dir / "config.yaml"
    if ckpt is None or not config.is_file():
        raise CheckpointError(
            f"{run_dir} is not a training run with a complete checkpoint (it needs config.yaml and "
            "checkpoint/manifest.json); train it first, or pass the run's folder"
        )
    cfg = load_config(config)
    steps = check_step(ckpt, verify_checkpoint(ckpt), cfg.optim.steps)
    setup = build(cfg)
    missing, unexpected = setup.model.load_state_dict(load_model_state(ckpt), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied weights are saved once
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt} does not match the model built from {config}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; was config.yaml edited after training?"
        )
    llm = setup.model.llm
    if hasattr(llm, "merge_and_unload"):  # peft: fold the LoRA adapters into the weights
        llm = llm.merge_and_unload()
    spec = setup.model.embedding_spec(
        eos_token=setup.tokenizer.convert_ids_to_tokens(setup.eos_id),
        eos_token_id=setup.eos_id,
        add_bos=setup.bos_id is not None,
        max_length=cfg.data.max_length,
        trained_from=cfg.model,
        objective=cfg.objective.name,
        steps=steps,
    )
    if cfg.objective.encode_prompt is not None:  # read through another template than the training one
        spec = spec.replace(prompt=cfg.objective.read_prompt)
    return llm.eval(), setup.tokenizer, spec
