"""``studies/readout.py``: the layers it reads on a tiny model (the last one is what ``Encoder`` embeds)."""

from __future__ import annotations

import numpy as np
from readout import encode_layers, layer_indices, post_process

from unimae.encoding.encoder import Encoder


def test_every_layer_is_read_whole_and_the_last_is_the_encoders(tiny_llama):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="eos")
    texts = ["a b c", "d e f g", "h"]
    layers = encode_layers(enc, texts)
    assert list(layers) == list(layer_indices(enc.model.config.num_hidden_layers))
    assert all(v.shape == (3, enc.dim) for v in layers.values())
    np.testing.assert_allclose(layers["last"], enc.encode(texts), atol=1e-5)
    names = list(layers)
    assert not np.allclose(layers[names[0]], layers[names[1]])  # another layer, not a slice of the last
    assert enc.encode(texts).shape == (3, enc.dim)  # the encoder is left as it was


def test_post_processing_removes_the_top_direction():
    rng = np.random.default_rng(0)
    fit = rng.normal(size=(200, 8))
    fit[:, 0] *= 50  # one dominant direction
    out = post_process(fit, fit, "center-pc1")
    top = np.linalg.svd(fit - fit.mean(0), full_matrices=False)[2][0]
    assert abs(top[0]) > 0.99  # the fixture's top direction is the inflated axis
    np.testing.assert_allclose(out @ top, 0.0, atol=1e-9)  # nothing left along it
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-9)  # centred
    np.testing.assert_allclose(np.linalg.norm(post_process(fit, fit, "l2"), axis=1), 1.0)
