"""TrainConfig validates every field's type and range on construction, from Python and from YAML files."""

import math

import pytest

from unimae.errors import UserError
from unimae.training.config import ConfigError, TrainConfig, load_config

BAD = [  # (field, value, words the message must hold)
    ("steps", "abc", "int"),
    ("steps", 1.5, "int"),
    ("steps", True, "int"),  # a bool is not a step count
    ("steps", 0, "[1, inf)"),
    ("lora", "maybe", "bool"),
    ("lora", 1, "bool"),
    ("lr", "fast", "float"),
    ("lr", math.nan, "float"),
    ("lr", -1e-4, "(0, inf)"),
    ("mar_mask_ratio", 1.5, "[0, 1]"),
    ("mntp_mask_ratio", 0.0, "(0, 1]"),
    ("lora_dropout", 1.0, "[0, 1)"),
    ("max_texts", "all", "int | None"),
    ("max_texts", 0, "[1, inf)"),
    ("mask_token", 3, "str | None"),
    ("decoder_pos_init_std", 0.0, "(0, inf)"),
    ("lora_target_modules", [1, 2], "str | list[str]"),
    ("lora_target_modules", [], "at least one"),
    ("extra", "notes", "dict"),
    ("precision", "fp8", "fp32, bf16, fp16"),
    ("objective", "simcse", "unimae, mntp"),
    ("seed", -1, "[0, inf)"),
    ("model", " ", "empty"),
]


@pytest.mark.parametrize("name,value,expected", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_field_is_named_with_value_and_expectation(name, value, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{name: value})
    message = str(info.value)
    assert name in message and expected in message
    assert isinstance(info.value, UserError)


def test_ints_are_taken_for_floats_and_defaults_validate():
    cfg = TrainConfig(lr=1, alpha=0)
    assert isinstance(cfg.lr, float) and cfg.lr == 1.0
    with pytest.raises(ConfigError, match="both be 0"):
        TrainConfig(alpha=0, mrc_weight=0)
    with pytest.raises(ConfigError, match="divisible"):
        TrainConfig(batch_size=6, grad_accum_steps=4)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("- steps\n- 3\n", "must hold a mapping"),
        ("just words\n", "must hold a mapping"),
        ("stepz: 3\n", "unknown config field(s) ['stepz']"),
        ("steps: abc\n", "steps must be of type int, got 'abc'"),
        ("lora: maybe\n", "lora must be of type bool"),
        ("steps: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_file(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_file_and_overrides(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown config field"):
        load_config(None, {"stepz": 3})
    with pytest.raises(ConfigError, match="steps"):
        load_config(None, {"steps": "3"})  # overrides arrive typed; text is not parsed here


def test_saved_config_loads_back_and_yaml_1e_floats(tmp_path):
    cfg = TrainConfig(
        steps=7, lora=True, lr=2e-4, max_texts=10, lora_target_modules=["q_proj"], extra={"a": 1}
    )
    cfg.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    (tmp_path / "f.yaml").write_text("lr: 1e-3\ndecoder_lr: 2e-3\n")  # YAML 1.1 reads these as strings
    loaded = load_config(tmp_path / "f.yaml")
    assert (loaded.lr, loaded.decoder_lr) == (1e-3, 2e-3)
