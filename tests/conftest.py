"""Tiny randomly initialised causal LMs built in code (two architecture families) and small corpora; the
study scripts' folder on the import path."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest
import torch

# the study scripts (studies/, outside the package) import each other by name, as when run from there
STUDIES = Path(__file__).resolve().parents[1] / "studies"
sys.path.insert(0, str(STUDIES))

WORDS = (
    "the a an of to in and is was for on with as by at from that this it be are were he she they we you "
    "cat dog bird fish house car tree river city music film book game team school water fire light night "
    "day year time people world war king queen army city state river ocean mountain forest computer science "
    "runs eats sings reads plays builds writes flies swims grows falls rises sees hears knows loves makes takes"
).split()


def _word_tokenizer(specials: list[str], bos: str | None, eos: str, unk: str, pad: str | None, add_bos: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(WORDS)) + [".", ",", "?", "!"])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    if add_bos:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, vocab[bos])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad
    )


def make_tiny_llama(path: Path) -> Path:
    """A 2-layer Llama with a word-level tokenizer that adds BOS (like Llama 2/3)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _word_tokenizer(
        ["<unk>", "<s>", "</s>", "<|reserved_special_token_0|>"], "<s>", "</s>", "<unk>", None, add_bos=True
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_tiny_gpt2(path: Path) -> Path:
    """A 2-layer GPT-2 (learned positions, LayerNorm, Conv1D) whose tokenizer adds no BOS."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _word_tokenizer(["<|endoftext|>", "<unk>"], None, "<|endoftext|>", "<unk>", None, add_bos=False)
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=128,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def random_sentences(n: int, seed: int = 0, lo: int = 4, hi: int = 14) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + " ." for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny_gpt2"))


@pytest.fixture(params=["llama", "gpt2"])
def tiny_model(request, tiny_llama, tiny_gpt2) -> Path:
    return {"llama": tiny_llama, "gpt2": tiny_gpt2}[request.param]


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(random_sentences(64)) + "\n")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMAE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def results(tmp_path) -> Path:
    """A copy of the fixture result files (eval summaries, lm-eval results) with one linked figure."""
    root = tmp_path / "results"
    shutil.copytree(Path(__file__).parent / "fixtures" / "eval" / "results", root)
    (root / "figures").mkdir()
    (root / "figures" / "tsne.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # only linked, never opened
    return root
