import numpy as np
import pytest
from conftest import random_sentences

from unimae import Encoder
from unimae.encoding.pooling import POOLINGS, layout
from unimae.tokens import TextTooLongError

TEXTS = random_sentences(9, seed=3, lo=1, hi=30)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_encode_invariant_to_padding_side_batch_and_order(tiny_model, pooling):
    right = Encoder.from_pretrained(str(tiny_model), pooling=pooling, padding_side="right")
    left = Encoder(right.model, right.tokenizer, pooling=pooling, padding_side="left")
    base = right.encode(TEXTS, batch_size=4)
    assert base.shape == (len(TEXTS), right.dim) and base.dtype == np.float32
    np.testing.assert_allclose(left.encode(TEXTS, batch_size=4), base, atol=1e-5)
    alone = np.stack([right.encode(t) for t in TEXTS])  # each text in a batch of its own
    np.testing.assert_allclose(alone, base, atol=1e-5)
    shuffled = right.encode(TEXTS[::-1], batch_size=3)[::-1]
    np.testing.assert_allclose(shuffled, base, atol=1e-5)


def test_eos_pooling_appends_eos_even_when_truncated(tiny_llama):
    enc = Encoder.from_pretrained(str(tiny_llama))
    long_text = " ".join(["cat"] * 200)
    item = layout("eos", enc.tokenizer, long_text, 16, enc.eos_id, enc.bos_id)
    assert len(item.ids) == 16 and item.ids[-1] == enc.eos_id and item.ids[0] == enc.bos_id
    assert item.start == 15
    v = enc.encode(long_text, max_length=16)
    assert v.shape == (enc.dim,)


def test_normalize(tiny_gpt2):
    enc = Encoder.from_pretrained(str(tiny_gpt2))
    v = enc.encode(TEXTS[:3], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def test_bad_inputs(tiny_gpt2):
    enc = Encoder.from_pretrained(str(tiny_gpt2))
    with pytest.raises(ValueError, match="empty"):
        enc.encode(["fine text", "   "])
    with pytest.raises(TypeError):
        enc.encode(["ok", 3])
    with pytest.raises(TextTooLongError):
        enc.encode(" ".join(["dog"] * 300), truncate=False)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        enc.encode("a dog", max_length=10_000)
    with pytest.raises(ValueError, match="unknown pooling"):
        Encoder(enc.model, enc.tokenizer, pooling="cls")


def test_generate_with_same_weights(tiny_gpt2):
    enc = Encoder.from_pretrained(str(tiny_gpt2))
    out = enc.generate("the cat", max_new_tokens=4, chat=False)
    assert isinstance(out, str) and out
