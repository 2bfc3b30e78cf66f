"""Export a model as a sentence-transformers folder: ``SentenceTransformer(folder)`` embeds like unimae.

The folder holds three standard modules and no unimae code:

    0 Transformer   the causal LM's base model (no LM head); its tokenizer's post-processor writes
                    ``[BOS]? text EOS`` (``[BOS]? prefix text suffix EOS`` for a model with a prompt in
                    its unimae.json), so the EOS and prompt are added by the tokenizer itself and survive
                    truncation (the tokenizer reserves room for them, as ``unimae.tokens`` does)
    1 Pooling       ``lasttoken``: the state of the last non-padding token, the EOS
    2 Normalize     unit vectors (optional)

Padding is set to the right. sentence-transformers passes no position ids, and some architectures
(GPT-2) then number left-padded positions from the padding, which changes the states; with right padding
every architecture gives the same vectors as ``Encoder.encode``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from unimae.encoding.encoder import Encoder
from unimae.encoding.pooling import PromptTokens
from unimae.errors import UserError
from unimae.io import atomic_dir, atomic_write_json, temp_dir_beside
from unimae.spec import EmbeddingSpec

# Texts checked after export: the exported tokenizer must give exactly unimae's input ids.
_PROBE_TEXTS = ("a", "The cat sat on the mat.", "word " * 2000)


def eos_post_processor(
    current,
    eos: tuple[str, int],
    bos: tuple[str, int] | None,
    prefix: tuple[list[str], list[int]] = ([], []),
    suffix: tuple[list[str], list[int]] = ([], []),
):
    """A tokenizers post-processor that writes ``[BOS]? $A EOS`` and keeps any offset-only step of ``current``.

    ``current`` is the backend tokenizer's post-processor (or None). A ``TemplateProcessing`` in it is
    replaced; other steps (e.g. ``ByteLevel``, which only trims offsets) are kept in front. ``prefix`` and
    ``suffix``: a prompt's ``(tokens, ids)`` written around ``$A`` (unimae's prompted layout
    ``[BOS]? prefix text suffix EOS``); the tokenizer truncates the text only.
    """
    from tokenizers import processors

    head = f"{bos[0]}:0 " if bos else ""
    special = [eos] + ([bos] if bos and bos[0] != eos[0] else [])
    text = "$A:0"
    if prefix[1]:
        special.append({"id": "UNIMAE_PROMPT_PREFIX", "tokens": prefix[0], "ids": prefix[1]})
        text = f"UNIMAE_PROMPT_PREFIX:0 {text}"
    if suffix[1]:
        special.append({"id": "UNIMAE_PROMPT_SUFFIX", "tokens": suffix[0], "ids": suffix[1]})
        text = f"{text} UNIMAE_PROMPT_SUFFIX:0"
    single = f"{head}{text} {eos[0]}:0"
    pair = f"{single} $B:1 {eos[0]}:1"
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
    around = {}
    if encoder.prompt is not None:  # the prompt's ids exactly as unimae's layout writes them
        parts = PromptTokens.of(encoder.tokenizer, encoder.prompt)
        around = {
            "prefix": (tokenizer.convert_ids_to_tokens(parts.prefix), parts.prefix),
            "suffix": (tokenizer.convert_ids_to_tokens(parts.suffix), parts.suffix),
        }
    backend.post_processor = eos_post_processor(backend.post_processor, eos, bos, **around)
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
    atomic_write_json(cfg_file, cfg)


def make_portable(folder: Path) -> None:
    """Make a saved folder load in sentence-transformers 5 with transformers 4 as well as in 6 with 5.

    The optimum packages behind ``backend="onnx"`` / ``"openvino"`` need transformers 4 today, so:
    - ``modules.json``: sentence-transformers 6 saves its own module paths
      (``sentence_transformers.base.modules.normalize.Normalize``), which 5.x cannot import; both map
      ``sentence_transformers.models.<Class>`` to their class;
    - ``tokenizer_config.json``: transformers 5 names its generic fast tokenizer ``TokenizersBackend``,
      unknown to transformers 4; ``PreTrainedTokenizerFast`` is the same class in 5 and loads in 4.
    """
    file = folder / "modules.json"
    modules = json.loads(file.read_text(encoding="utf-8"))
    for module in modules:
        if module["type"].startswith("sentence_transformers."):
            module["type"] = "sentence_transformers.models." + module["type"].rsplit(".", 1)[-1]
    atomic_write_json(file, modules)
    file = folder / "tokenizer_config.json"
    cfg = json.loads(file.read_text(encoding="utf-8"))
    if cfg.get("tokenizer_class") == "TokenizersBackend":
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        atomic_write_json(file, cfg)


def check_tokenizer(folder: str | Path, encoder: Encoder) -> None:
    """RuntimeError unless the tokenizer in ``folder`` gives unimae's ``[BOS]? text EOS`` ids (truncated too),
    with the encoder's prompt around the text where it has one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text, laid_out in zip(_PROBE_TEXTS, encoder.tokenize(_PROBE_TEXTS), strict=True):
        want = laid_out.ids
        got = tokenizer(text, truncation=True).input_ids
        if got != want:
            raise RuntimeError(
                f"exported tokenizer gives {got[:8]}...{got[-4:]} for {text[:20]!r}, "
                f"unimae gives {want[:8]}...{want[-4:]}"
            )


def export_sentence_transformers(
    encoder: Encoder,
    out_dir: str | Path,
    normalize: bool = True,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a sentence-transformers folder for ``encoder`` (``eos`` pooling) to ``out_dir``, atomically.

    ``SentenceTransformer(out_dir).encode(texts)`` then equals
    ``encoder.encode(texts, normalize_embeddings=normalize)`` (up to float error), with the same truncation
    to ``encoder.max_length`` tokens, EOS kept. An existing ``out_dir`` stays complete until the new folder,
    built and checked beside it, is swapped in. ``extra(folder)`` adds files (an ONNX graph) before that.
    """
    if encoder.pooling != "eos" or encoder.attention != "causal":
        raise UserError(
            "only EOS pooling with causal attention exports as sentence-transformers' lasttoken pooling; "
            f"this model embeds with {encoder.pooling} pooling and {encoder.attention} attention"
        )
    out_dir = Path(out_dir)
    stage = temp_dir_beside(out_dir, "stage")  # removed below, or by a later export if this one is killed
    try:
        with atomic_dir(out_dir) as tmp:
            _build_st_folder(encoder, stage, tmp, normalize)
            if extra is not None:
                extra(Path(tmp))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out_dir


def _build_st_folder(encoder: Encoder, stage: Path, folder: Path, normalize: bool) -> None:
    """Write the sentence-transformers folder of ``encoder`` into ``folder`` (the transformer staged in
    ``stage``), its tokenizer checked against unimae's."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    _stage_transformer(encoder, stage)
    # Plain text in, token states out: pinned, so the chat template is never applied to inputs.
    transformer = Transformer(
        stage,
        modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        module_output_name="token_embeddings",
    )
    modules = [transformer, Pooling(encoder.dim, pooling_mode="lasttoken")]
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu", similarity_fn_name="cosine")
    st.save(str(folder))
    make_portable(folder)
    check_tokenizer(folder, encoder)


def write_sentence_transformers(llm, tokenizer, out_dir: str | Path, spec: EmbeddingSpec) -> Path:
    """The ``sentence-transformers`` export format: see ``export_sentence_transformers``."""
    encoder = Encoder.from_spec(llm, tokenizer, spec, device="cpu")
    return export_sentence_transformers(encoder, out_dir, normalize=spec.normalize)
