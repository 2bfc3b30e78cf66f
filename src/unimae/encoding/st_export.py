"""Export a model as a sentence-transformers folder: ``SentenceTransformer(folder)`` embeds like unimae.

The folder holds three standard modules and no unimae code:

    0 Transformer   the causal LM's base model (no LM head); its tokenizer's post-processor writes
                    ``[BOS]? text EOS``, so the EOS is appended by the tokenizer itself and survives
                    truncation (the tokenizer reserves room for it, as ``unimae.tokens`` does)
    1 Pooling       ``lasttoken``: the state of the last non-padding token, the EOS
    2 Normalize     unit vectors (optional)

Padding is set to the right. sentence-transformers passes no position ids, and some architectures
(GPT-2) then number left-padded positions from the padding, which changes the states; with right padding
every architecture gives the same vectors as ``Encoder.encode``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from unimae.encoding.encoder import Encoder
from unimae.encoding.pooling import layout

FORMATS = ("causal-lm", "sentence-transformers")

# Texts checked after export: the exported tokenizer must give exactly unimae's input ids.
_PROBE_TEXTS = ("a", "The cat sat on the mat.", "word " * 2000)


def eos_post_processor(current, eos: tuple[str, int], bos: tuple[str, int] | None):
    """A tokenizers post-processor that writes ``[BOS]? $A EOS`` and keeps any offset-only step of ``current``.

    ``current`` is the backend tokenizer's post-processor (or None). A ``TemplateProcessing`` in it is
    replaced; other steps (e.g. ``ByteLevel``, which only trims offsets) are kept in front.
    """
    from tokenizers import processors

    head = f"{bos[0]}:0 " if bos else ""
    single = f"{head}$A:0 {eos[0]}:0"
    pair = f"{single} $B:1 {eos[0]}:1"
    special = [eos] + ([bos] if bos and bos[0] != eos[0] else [])
    template = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)
    if current is None:
        return template
    state = json.loads(current.__getstate__())
    if state["type"] == "TemplateProcessing":
        return template
    if state["type"] == "Sequence":
        keep = [
            current[i] for i, step in enumerate(state["processors"]) if step["type"] != "TemplateProcessing"
        ]
        return processors.Sequence([*keep, template])
    return processors.Sequence([current, template])


def _stage_transformer(encoder: Encoder, stage: Path) -> None:
    """Write the base model and a tokenizer that appends EOS (right padding, unimae's max_length) to ``stage``."""
    from transformers import AutoTokenizer

    encoder.model.base_model.save_pretrained(stage)
    encoder.tokenizer.save_pretrained(stage)
    tokenizer = AutoTokenizer.from_pretrained(stage)  # a fresh copy: the encoder's tokenizer stays as it was
    backend = tokenizer.backend_tokenizer
    eos = (tokenizer.convert_ids_to_tokens(encoder.eos_id), encoder.eos_id)
    bos = (
        (tokenizer.convert_ids_to_tokens(encoder.bos_id), encoder.bos_id)
        if encoder.bos_id is not None
        else None
    )
    backend.post_processor = eos_post_processor(backend.post_processor, eos, bos)
    tokenizer.model_max_length = encoder.max_length
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(encoder.pad_id)
    tokenizer.save_pretrained(stage)
    # transformers rebuilds the post-processor on load when these flags are in the config: drop them;
    # and the padding side is only saved from the config, not from the attribute.
    cfg_file = stage / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    for key in ("add_bos_token", "add_eos_token"):
        cfg.pop(key, None)
    cfg["padding_side"] = "right"
    cfg_file.write_text(json.dumps(cfg, indent=2))


def check_tokenizer(folder: str | Path, encoder: Encoder) -> None:
    """RuntimeError unless the tokenizer in ``folder`` gives unimae's ``[BOS]? text EOS`` ids (truncated too)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text in _PROBE_TEXTS:
        want = layout("eos", encoder.tokenizer, text, encoder.max_length, encoder.eos_id, encoder.bos_id).ids
        got = tokenizer(text, truncation=True).input_ids
        if got != want:
            raise RuntimeError(
                f"exported tokenizer gives {got[:8]}...{got[-4:]} for {text[:20]!r}, "
                f"unimae gives {want[:8]}...{want[-4:]}"
            )


def export_sentence_transformers(encoder: Encoder, out_dir: str | Path, normalize: bool = True) -> Path:
    """Write a sentence-transformers folder for ``encoder`` (``eos`` pooling) to ``out_dir``, atomically.

    ``SentenceTransformer(out_dir).encode(texts)`` then equals ``encoder.encode(texts, normalize=normalize)``
    (up to float error), with the same truncation to ``encoder.max_length`` tokens, EOS kept.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    if encoder.pooling != "eos":
        raise ValueError(
            f"only eos pooling exports as lasttoken pooling, this encoder uses {encoder.pooling!r}"
        )
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent))
    try:
        stage = tmp / "stage"
        _stage_transformer(encoder, stage)
        # Plain text in, token states out: pinned, so the chat template is never applied to inputs.
        transformer = Transformer(
            str(stage),
            modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            module_output_name="token_embeddings",
        )
        modules = [transformer, Pooling(encoder.dim, pooling_mode="lasttoken")]
        if normalize:
            modules.append(Normalize())
        st = SentenceTransformer(modules=modules, device="cpu", similarity_fn_name="cosine")
        built = tmp / "out"
        st.save(str(built))
        check_tokenizer(built, encoder)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(built, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_model(source: str | Path, out_dir: str | Path | None = None, format: str = "causal-lm") -> Path:
    """Export a run folder (its last checkpoint) or any model (folder, .gguf, alias) in ``format``.

    ``causal-lm``: a plain ``AutoModelForCausalLM`` folder with ``unimae.json`` (default ``RUN/model``).
    ``sentence-transformers``: see ``export_sentence_transformers`` (``out_dir`` required).
    """
    from unimae.encoding.loading import resolve_model_path
    from unimae.training.checkpoint import find_checkpoint
    from unimae.training.export import EMBEDDING_INFO, embedding_info, export_causal_lm
    from unimae.training.loop import export_run

    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    source = Path(source)
    is_run = source.is_dir() and (source / "config.yaml").exists() and find_checkpoint(source) is not None
    if format == "causal-lm":
        if is_run:
            return export_run(source, out_dir)
        if out_dir is None:
            raise ValueError("give -o/--output: where to write the exported model")
        enc = Encoder.from_pretrained(str(source), device="cpu")
        # keep what a unimae folder recorded (training length, steps, ...)
        old_info = Path(resolve_model_path(str(source))) / EMBEDDING_INFO
        old = json.loads(old_info.read_text()) if old_info.is_file() else {}
        new = embedding_info(enc.tokenizer, enc.eos_id, old.get("max_length", enc.max_length))
        return export_causal_lm(
            enc.model, enc.tokenizer, out_dir, {**old, **new, "exported_from": str(source)}
        )
    if out_dir is None:
        raise ValueError("give -o/--output: where to write the sentence-transformers folder")
    if is_run and not (source / "model" / "config.json").exists():
        export_run(source)  # the run's model/ folder first, then the sentence-transformers folder from it
    enc = Encoder.from_pretrained(str(source), pooling="eos", device="cpu")
    return export_sentence_transformers(enc, out_dir)
