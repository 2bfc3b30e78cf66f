"""Training data: tokenized texts, a deterministic step -> batch order, and the collator."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from unimae.encoding.pooling import PromptTokens
from unimae.objective.model import UniMAEBatch
from unimae.tokens import bos_id_if_added, build_input_ids, pad_batch


def tokenize_corpus(texts: Sequence[str], tokenizer, max_length: int, eos_id: int) -> list[list[int]]:
    """Each text as ``[BOS]? x_1..x_n EOS`` (truncated to max_length). Texts with no tokens are dropped."""
    bos = bos_id_if_added(tokenizer)
    out = []
    for start in range(0, len(texts), 1024):
        chunk = list(texts[start : start + 1024])
        for ids in tokenizer(chunk, add_special_tokens=False).input_ids:
            if ids:
                out.append(build_input_ids(ids, max_length, eos_id, bos))
    if not out:
        raise ValueError("no training text left after tokenization (all texts were empty)")
    return out


def prompted_corpus(
    corpus: list[list[int]], prompt: PromptTokens, max_length: int, eos_id: int, bos_id: int | None
) -> list[list[int]]:
    """``[BOS]? x EOS`` sequences rewritten as ``[BOS]? prefix x suffix EOS`` within ``max_length``
    (the text truncated, never the prompt): the layout ``Encoder(prompt=...)`` embeds with."""
    head = int(bos_id is not None)
    room = max_length - 1 - head
    return [build_input_ids(prompt.wrap(ids[head:-1], room), max_length, eos_id, bos_id) for ids in corpus]


def batch_indices(n_examples: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Example indices of the global batch of optimizer step ``step`` (0-based).

    The corpus is walked in epochs, each a fresh permutation seeded by (seed, epoch); a batch may
    straddle two epochs. A pure function of its arguments, so a resumed run sees the same data.
    """
    start = step * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_examples)
        perm = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = min(batch_size - len(out), n_examples - offset)
        out.extend(perm[offset : offset + take].tolist())
    return out


@dataclass
class ReadView:
    """What the terms on the read state need besides the training input: each example's clean text in the
    read template (``read_corpus``, aligned with the training corpus) and its teacher vector (or None)."""

    corpus: list[list[int]]
    teacher: torch.Tensor | None = None  # (n_examples, d_t)

    def add_to(self, batch: UniMAEBatch, idx: Sequence[int], pad_id: int) -> UniMAEBatch:
        ids, mask = pad_batch([self.corpus[i] for i in idx], pad_id, side="right")
        teacher = None if self.teacher is None else self.teacher[list(idx)]
        return dataclasses.replace(
            batch, read_ids=ids, read_mask=mask, read_eos=mask.sum(-1) - 1, teacher=teacher
        )


def read_corpus(
    corpus: list[list[int]], prompt: PromptTokens | None, max_length: int, eos_id: int, bos_id: int | None
) -> list[list[int]]:
    """The training sequences as the export embeds them: in the read template, or as they are."""
    return corpus if prompt is None else prompted_corpus(corpus, prompt, max_length, eos_id, bos_id)


def needed_examples(n_examples: int, batch_size: int, seed: int, start_step: int, steps: int) -> list[int]:
    """The example indices steps ``start_step .. steps-1`` will read, each once, in first-seen order."""
    seen: dict[int, None] = {}
    for step in range(start_step, steps):
        seen.update(dict.fromkeys(batch_indices(n_examples, batch_size, seed, step)))
    return list(seen)


def collate(
    examples: Sequence[Sequence[int]], example_ids: Sequence[int], pad_id: int, has_bos: bool
) -> UniMAEBatch:
    """Right-padded UniMAEBatch from ``[BOS]? x.. EOS`` id lists."""
    input_ids, attention_mask = pad_batch(examples, pad_id, side="right")
    lengths = attention_mask.sum(-1)  # (B,)
    eos_index = lengths - 1
    pos = torch.arange(input_ids.shape[1])[None, :]
    content = (pos < eos_index[:, None]) & (pos >= int(has_bos))  # text tokens only
    return UniMAEBatch(
        input_ids, attention_mask, content, eos_index, torch.tensor(list(example_ids), dtype=torch.long)
    )


def step_batches(
    corpus: list[list[int]],
    batch_size: int,
    seed: int,
    start_step: int,
    steps: int,
    pad_id: int,
    has_bos: bool,
    read: ReadView | None = None,
) -> Iterator[tuple[int, UniMAEBatch]]:
    """``(step, global batch)`` for steps ``start_step .. steps-1`` (with the read view, if given)."""
    for step in range(start_step, steps):
        idx = batch_indices(len(corpus), batch_size, seed, step)
        batch = collate([corpus[i] for i in idx], idx, pad_id, has_bos)
        yield step, batch if read is None else read.add_to(batch, idx, pad_id)
