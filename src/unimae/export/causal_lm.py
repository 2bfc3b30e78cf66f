"""The ``causal-lm`` export: a plain ``AutoModelForCausalLM`` folder plus ``unimae.json``.

LoRA merged, tiny decoder dropped (only the LLM is given), tokenizer included, and the
``EmbeddingSpec`` that says how to embed. ``AutoModelForCausalLM.from_pretrained`` loads the folder and
generates as usual; ``unimae.Encoder.from_pretrained`` embeds with it.
"""

from __future__ import annotations

from pathlib import Path

from unimae.io import atomic_dir
from unimae.spec import EmbeddingSpec


def save_causal_lm(llm, tokenizer, out_dir: str | Path, spec: EmbeddingSpec) -> Path:
    """Write ``llm`` (peft adapters merged), its tokenizer and ``spec`` to ``out_dir``; returns ``out_dir``.

    The folder is built beside ``out_dir`` and swapped in whole: an existing ``out_dir`` stays complete
    and readable until the swap, and a crash leaves it as it was.
    """
    if hasattr(llm, "merge_and_unload"):  # a peft model: fold the adapters into the weights
        llm = llm.merge_and_unload()
    with atomic_dir(out_dir) as tmp:
        llm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        spec.save(tmp)
    return Path(out_dir)
