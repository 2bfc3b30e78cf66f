import pytest
from transformers import AutoTokenizer

from unimae.tokens import (
    TextTooLongError,
    bos_id_if_added,
    build_input_ids,
    eos_token_id,
    mask_token_id,
    pad_batch,
    position_ids,
)


def test_mask_token_defaults(tiny_llama, tiny_gpt2):
    llama = AutoTokenizer.from_pretrained(tiny_llama)
    assert mask_token_id(llama) == llama.convert_tokens_to_ids("<|reserved_special_token_0|>")
    gpt2 = AutoTokenizer.from_pretrained(tiny_gpt2)
    assert mask_token_id(gpt2) == gpt2.convert_tokens_to_ids("<unk>")
    assert mask_token_id(gpt2, "cat") == gpt2.convert_tokens_to_ids("cat")
    with pytest.raises(ValueError, match="not a single token"):
        mask_token_id(gpt2, "<no-such-token>")


def test_bos_detection(tiny_llama, tiny_gpt2):
    assert bos_id_if_added(AutoTokenizer.from_pretrained(tiny_llama)) is not None
    assert bos_id_if_added(AutoTokenizer.from_pretrained(tiny_gpt2)) is None


def test_eos_is_appended_also_when_truncated():
    assert build_input_ids([5, 6, 7], 10, eos_id=2, bos_id=1) == [1, 5, 6, 7, 2]
    assert build_input_ids(list(range(10, 30)), 6, eos_id=2, bos_id=1) == [1, 10, 11, 12, 13, 2]
    assert build_input_ids(list(range(10, 30)), 6, eos_id=2, bos_id=None) == [10, 11, 12, 13, 14, 2]
    with pytest.raises(TextTooLongError):
        build_input_ids(list(range(10, 30)), 6, eos_id=2, bos_id=None, truncate=False)


def test_padding_and_positions():
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0, side="left")
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert position_ids(mask).tolist() == [[0, 1, 2], [0, 0, 0]]
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0, side="right")
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_eos_override(tiny_gpt2):
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    assert eos_token_id(tok) == tok.eos_token_id
    assert eos_token_id(tok, "<unk>") == tok.convert_tokens_to_ids("<unk>")
