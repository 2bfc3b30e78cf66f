"""Export a trained UniMAE model as a plain causal-LM folder.

LoRA merged, tiny decoder dropped, tokenizer included, plus ``unimae.json`` that records how to
embed (EOS pooling and which EOS token). ``AutoModelForCausalLM.from_pretrained`` loads the folder
and generates as usual; ``unimae.Encoder.from_pretrained`` embeds with it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from unimae.tokens import bos_id_if_added

EMBEDDING_INFO = "unimae.json"


def embedding_info(tokenizer, eos_id: int, max_length: int, **extra) -> dict:
    return {
        "pooling": "eos",
        "eos_token": tokenizer.convert_ids_to_tokens(eos_id),
        "eos_token_id": eos_id,
        "add_bos": bos_id_if_added(tokenizer) is not None,
        "normalize": True,
        "max_length": max_length,
        **extra,
    }


def export_causal_lm(llm, tokenizer, out_dir: str | Path, info: dict) -> Path:
    """Write ``llm`` (peft adapters merged) + tokenizer + ``unimae.json`` to ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    if hasattr(llm, "merge_and_unload"):
        llm = llm.merge_and_unload()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent))
    try:
        llm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / EMBEDDING_INFO).write_text(json.dumps(info, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
