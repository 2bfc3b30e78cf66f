"""Token-level conventions shared by training and encoding.

A text becomes ``[BOS]? x_1 .. x_N EOS``: BOS only where the tokenizer normally adds one, EOS always
appended by us (never trusted to the tokenizer), also when the text was truncated.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unimae.errors import UserError

# Rarely used special tokens that can stand in for a mask token, in order of preference, for
# tokenizers without one (Llama-family tokenizers have none).
MASK_TOKEN_CANDIDATES = (
    "<|reserved_special_token_0|>",  # Llama 3
    "<empty_output>",  # SmolLM / StarCoder vocabularies
    "<|fim_pad|>",  # Qwen 2
    "<unused0>",  # Gemma
    "<unk>",
)


class TextTooLongError(UserError):
    """A text is longer than the allowed context and truncation is off."""


class NoRoomError(UserError):
    """``max_length`` is taken up by the prompt and special tokens: no text token fits."""


def resolve_token_id(tokenizer, token: str) -> int:
    """Id of a single token string; ValueError if the tokenizer does not know it as one token."""
    ids = tokenizer.convert_tokens_to_ids([token])
    unk = tokenizer.unk_token_id
    if not ids or ids[0] is None or (ids[0] == unk and token != tokenizer.unk_token):
        raise ValueError(f"token {token!r} is not a single token of this tokenizer")
    return int(ids[0])


def eos_token_id(tokenizer, eos_token: str | None = None) -> int:
    """The EOS id appended to every text: ``eos_token`` if given, else the tokenizer's EOS."""
    if eos_token is not None:
        return resolve_token_id(tokenizer, eos_token)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: pass eos_token explicitly")
    return int(tokenizer.eos_token_id)


def mask_token_id(tokenizer, mask_token: str | None = None) -> int:
    """The token that replaces masked MAR inputs.

    Default: the tokenizer's own mask token if it has one, else the first of
    ``MASK_TOKEN_CANDIDATES`` in its vocabulary, else the ordinary token "_" as a fixed fallback.
    """
    if mask_token is not None:
        return resolve_token_id(tokenizer, mask_token)
    if getattr(tokenizer, "mask_token_id", None) is not None:
        return int(tokenizer.mask_token_id)
    vocab = tokenizer.get_vocab()
    for cand in MASK_TOKEN_CANDIDATES:
        if cand in vocab:
            return int(vocab[cand])
    ids = tokenizer("_", add_special_tokens=False).input_ids
    return int(ids[0])


def bos_id_if_added(tokenizer) -> int | None:
    """The BOS id if the tokenizer adds one to plain text by default (Llama 2/3 do, SmolLM2 does not)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    ids = tokenizer("a").input_ids
    return int(bos) if ids and ids[0] == bos else None


def truncate_ids(text_ids: Sequence[int], room: int, truncate: bool) -> list[int]:
    """The first ``room`` ids of a text (TextTooLongError instead when ``truncate`` is off)."""
    if room < 1:
        raise NoRoomError(
            "max_length leaves no room for the text after the prompt and special tokens: raise max_length "
            "(data.max_length when training, --max-length when encoding) or shorten the prompt"
        )
    if len(text_ids) > room:
        if not truncate:
            raise TextTooLongError(
                f"text of {len(text_ids)} tokens is longer than the {room} tokens max_length allows"
            )
        return list(text_ids[:room])
    return list(text_ids)


def pad_token_id(tokenizer, eos_id: int) -> int:
    """The id padding is filled with: the tokenizer's pad token, else EOS (padding is always masked)."""
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else eos_id


def build_input_ids(
    token_ids: Sequence[int], max_length: int, eos_id: int, bos_id: int | None, truncate: bool = True
) -> list[int]:
    """``[BOS]? x_1..x_n EOS`` from the clean token ids of one text, at most ``max_length`` long.

    Truncation drops tokens from the end of the text, never the EOS.
    """
    room = max_length - 1 - (bos_id is not None)
    if room < 1:
        raise ValueError(f"max_length={max_length} leaves no room for text")
    token_ids = truncate_ids(token_ids, room, truncate)
    return ([bos_id] if bos_id is not None else []) + list(token_ids) + [eos_id]


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists into ``input_ids`` and ``attention_mask`` tensors of shape ``(B, L)``."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(L - len(s), L) if side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left and right padding give the same states."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
