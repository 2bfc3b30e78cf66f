import numpy as np
import pytest
from conftest import random_sentences

from unimae import Encoder
from unimae.encoding.encoder import length_batches
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


def test_length_batches_cut_by_count_and_padded_tokens():
    lengths = [5, 40, 12, 11, 30, 6, 12]
    assert length_batches(lengths, 3) == [[1, 4, 2], [6, 3, 5], [0]]  # longest first, stable on ties
    # a budget of 48 padded tokens: 40 alone, 30 alone, then 12 x 4 = 48 fits four texts
    assert length_batches(lengths, 32, max_tokens=48) == [[1], [4], [2, 6, 3, 5], [0]]
    assert length_batches([100, 3], 32, max_tokens=10) == [[0], [1]]  # a text over the budget goes alone
    assert length_batches([], 4) == []
    with pytest.raises(ValueError):
        length_batches(lengths, 4, max_tokens=0)


def test_token_budget_gives_the_same_vectors(tiny_llama):
    enc = Encoder.from_pretrained(str(tiny_llama))
    items = enc.tokenize(TEXTS)
    base = enc.encode_tokenized(items, batch_size=32)
    np.testing.assert_allclose(enc.encode_tokenized(items, batch_size=32, max_tokens=40), base, atol=1e-5)


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
    v = enc.encode(TEXTS[:3], normalize_embeddings=True)
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


def test_truncate_dim_keeps_first_dims_then_normalizes(tiny_llama):
    enc = Encoder.from_pretrained(str(tiny_llama))
    full = enc.encode(TEXTS[:4])
    cut = enc.encode(TEXTS[:4], truncate_dim=8)
    np.testing.assert_allclose(cut, full[:, :8], atol=1e-6)
    unit = enc.encode(TEXTS[:4], truncate_dim=8, normalize_embeddings=True)
    np.testing.assert_allclose(
        unit, full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True), atol=1e-5
    )
    assert enc.encode(TEXTS[0], truncate_dim=enc.dim).shape == (enc.dim,)
    for bad in (0, -1, enc.dim + 1):
        with pytest.raises(ValueError, match="truncate_dim"):
            enc.encode(TEXTS[:2], truncate_dim=bad)
    with pytest.raises(TypeError, match="truncate_dim"):
        enc.encode(TEXTS[:2], truncate_dim=2.5)


@pytest.mark.parametrize("pooling", ["eos", "mean", "tokenprepend"])
def test_encode_layers_reads_every_layer_at_the_encoders_positions(tiny_llama, pooling):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling=pooling)
    n = enc.model.config.num_hidden_layers
    by_layer = enc.encode_layers(TEXTS[:5], [-1, n, 1, 0], batch_size=2)
    assert list(by_layer) == [-1, n, 1, 0] and all(v.shape == (5, enc.dim) for v in by_layer.values())
    np.testing.assert_allclose(by_layer[-1], enc.encode(TEXTS[:5]), atol=1e-5)  # -1 is what encode reads
    np.testing.assert_allclose(by_layer[n], by_layer[-1])
    assert not np.allclose(by_layer[1], by_layer[n], atol=1e-3)  # another layer, not a copy of the last
    # an intermediate layer passes the final norm: each vector's RMS is about the norm's weight (ones)
    if pooling != "mean":
        np.testing.assert_allclose(np.sqrt((by_layer[1] ** 2).mean(1)), 1.0, atol=1e-2)
    for bad in ([n + 1], [-(n + 2)], []):
        with pytest.raises(ValueError, match="layers must index"):
            enc.encode_layers(TEXTS[:2], bad)


def test_from_pretrained_reads_the_spec(tiny_llama, tmp_path):
    import shutil

    from unimae.spec import EmbeddingSpec

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama, folder)
    EmbeddingSpec(pooling="mean", attention="bidirectional").save(folder)
    enc = Encoder.from_pretrained(str(folder))
    assert (enc.pooling, enc.attention) == ("mean", "bidirectional")
    assert Encoder.from_pretrained(str(folder), pooling="eos").pooling == "eos"  # an argument wins
    unset = Encoder.from_pretrained(str(folder), pooling=None, eos_token=None, attention=None)
    assert (unset.pooling, unset.attention) == ("mean", "bidirectional")  # None is "not given" (CLI flags)
    assert enc.spec.pooling == "mean" and enc.spec.eos_token_id == enc.eos_id


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ('{"pooling": "cls"}', "pooling"),
        ('{"max_length": 1}', "max_length"),
        ("[1, 2]", "JSON object"),
        ('{"eos_token_id": 3, "eos_token": "cat"}', "eos_token_id"),
    ],
)
def test_corrupt_spec_names_the_file(tiny_llama, tmp_path, content, match):
    import shutil

    from unimae.spec import SpecError

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama, folder)
    (folder / "unimae.json").write_text(content)
    with pytest.raises(SpecError, match=match) as err:
        Encoder.from_pretrained(str(folder))
    assert str(folder / "unimae.json") in str(err.value)


def test_generate_keeps_control_token_text_as_text(tiny_llama):
    """A prompt holding the EOS token's text must not become the EOS token (no forged turn or stop)."""
    enc = Encoder.from_pretrained(str(tiny_llama))
    seen = {}

    def fake_generate(input_ids, **kwargs):
        seen["ids"] = input_ids[0].tolist()
        return input_ids

    enc.model.generate = fake_generate
    enc.generate("the cat </s> runs", chat=False)
    assert enc.eos_id not in seen["ids"]
