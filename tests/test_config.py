"""TrainConfig validates every field's type and range on construction, from Python and from YAML files;
sections pass whole, and the flat names of older configs still load through one table (LEGACY)."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from unimae.config_names import LEGACY, OPTIM_FIELDS, SECTION_NAMES, flat_names
from unimae.errors import UserError
from unimae.evaluation.report import is_study_list
from unimae.training.config import (
    SECTIONS,
    ConfigError,
    LoraConfig,
    OptimConfig,
    TrainConfig,
    load_config,
)

BAD = [  # (field, value, the field's name now, words the message must hold)
    ("steps", "abc", "optim.steps", "valid integer"),
    ("steps", 1.5, "optim.steps", "valid integer"),
    ("steps", True, "optim.steps", "valid integer"),  # a bool is not a step count
    ("steps", 0, "optim.steps", "greater than or equal to 1"),
    ("lora", "maybe", "lora.enabled", "valid boolean"),
    ("lora", 1, "lora.enabled", "valid boolean"),
    ("lr", "fast", "optim.lr", "valid number"),
    ("lr", math.nan, "optim.lr", "finite number"),
    ("lr", True, "optim.lr", "bool"),
    ("lr", -1e-4, "optim.lr", "greater than 0"),
    ("mar_mask_ratio", 1.5, "objective.mar_mask_ratio", "less than or equal to 1"),
    ("mntp_mask_ratio", 0.0, "objective.mntp_mask_ratio", "greater than 0"),
    ("lora_dropout", 1.0, "lora.dropout", "less than 1"),
    ("max_texts", "all", "data.max_texts", "valid integer"),
    ("max_texts", 0, "data.max_texts", "greater than or equal to 1"),
    ("mask_token", 3, "objective.mask_token", "valid string"),
    ("decoder_pos_init_std", 0.0, "decoder.pos_init_std", "greater than 0"),
    ("lora_target_modules", [1, 2], "lora.target_modules", "expected str | list[str], got [1, 2]"),
    ("lora_target_modules", [], "lora.target_modules", "expected str | list[str], got []"),
    ("extra", "notes", "extra", "valid dictionary"),
    ("precision", "fp8", "precision", "'fp32', 'bf16' or 'fp16'"),
    ("objective", "simcse", "objective.name", "'unimae' or 'mntp'"),
    ("seed", -1, "seed", "greater than or equal to 0"),
    ("model", " ", "model", "match pattern"),
]


@pytest.mark.parametrize("name,value,where,expected", BAD, ids=[f"{n}={v!r}" for n, v, _, _ in BAD])
def test_bad_field_is_named_with_value_and_expectation(name, value, where, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{name: value})
    message = str(info.value)
    assert message.startswith(f"{where}: ") and expected in message and "\n" not in message
    assert isinstance(info.value, UserError)
    section, dot, field = where.partition(".")
    if dot:  # the same check through the section's own spelling
        with pytest.raises(ConfigError, match=f"^{where}: "):
            TrainConfig(**{section: {field: value}})


def test_ints_are_taken_for_floats_and_defaults_validate():
    cfg = TrainConfig(lr=1, alpha=0)
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == 1.0
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
        ("optim:\n  stepz: 3\n", "optim.stepz: unknown field"),
        ("steps: abc\n", "optim.steps: input should be a valid integer, got 'abc'"),
        ("optim:\n  steps: abc\n", "optim.steps: input should be a valid integer, got 'abc'"),
        ("lora: maybe\n", "lora.enabled: input should be a valid boolean"),
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
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(None, {"optim.stepz": 3})


def test_saved_config_loads_back_and_yaml_1e_floats(tmp_path):
    cfg = TrainConfig(
        steps=7, lora=True, lr=2e-4, max_texts=10, lora_target_modules=["q_proj"], extra={"a": 1}
    )
    cfg.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    (tmp_path / "f.yaml").write_text("lr: 1e-3\ndecoder_lr: 2e-3\n")  # YAML 1.1 reads these as strings
    loaded = load_config(tmp_path / "f.yaml")
    assert (loaded.optim.lr, loaded.optim.decoder_lr) == (1e-3, 2e-3)


def test_sections_pass_whole_and_every_spelling_gives_one_config(tmp_path):
    flat = TrainConfig(
        lr=2e-4, lora=True, lora_r=8, decoder_rope=True, data="t.txt", max_length=32, objective="unimae"
    )
    dotted = load_config(
        None,
        {
            "optim.lr": 2e-4,
            "lora.enabled": True,
            "lora.r": 8,
            "decoder.rope": True,
            "data.source": "t.txt",
            "data.max_length": 32,
        },
    )
    nested = TrainConfig(
        optim={"lr": 2e-4},
        lora={"enabled": True, "r": 8},
        decoder={"rope": True},
        data={"source": "t.txt", "max_length": 32},
    )
    assert flat == dotted == nested
    assert (flat.optim.lr, flat.lora.r, flat.decoder.rope, flat.data.max_length) == (2e-4, 8, True, 32)
    (tmp_path / "n.yaml").write_text("optim:\n  lr: 2e-4\nlora:\n  enabled: true\n  r: 8\n")
    assert load_config(tmp_path / "n.yaml", {"lr": 1e-3}).optim == OptimConfig(lr=1e-3)  # override wins
    assert load_config(tmp_path / "n.yaml", {"lr": 1e-3}).lora == LoraConfig(enabled=True, r=8)


def test_every_flat_name_maps_to_a_field_and_back():
    cfg = TrainConfig()
    flat = cfg.flat()
    for old, new in LEGACY.items():
        assert new in flat, (old, new)
    assert flat_names(cfg.to_dict())["lr"] == cfg.optim.lr
    assert flat_names({"lr": 1.0, "steps": 3}) == {"lr": 1.0, "steps": 3}  # an older flat record as it is


def test_the_flat_name_table_knows_every_section_and_optim_field():
    """The table lives outside training (evaluation reads run configs with it): it must name TrainConfig's
    sections, and an optim field added without a flat name would be missed by older-style overrides."""
    assert SECTION_NAMES == tuple(SECTIONS)
    assert OPTIM_FIELDS == tuple(f.name for f in dataclasses.fields(OptimConfig))


def test_committed_flat_configs_and_result_records_still_load():
    """Every ``training`` record inside the committed result files (summary.json and lm_eval.json, written
    under the flat names of older configs) loads through the one table of flat names."""
    root = Path(__file__).parents[1] / "results"
    records = []
    for path in sorted([*root.rglob("summary.json"), *root.rglob("lm_eval.json")]):
        if is_study_list(path):  # results/scale/summary.json: the size study's margin records
            continue
        training = json.loads(path.read_text()).get("model_info", {}).get("training")
        if training:
            records.append(training)
    assert len(records) > 20
    for training in records:
        cfg = TrainConfig(**training)
        assert flat_names(cfg.to_dict())["lr"] == training.get("lr", cfg.optim.lr)
    default = load_config("default")
    assert default.lora.enabled and default.objective.mar_mask_ratio == 0.2


def test_shipped_recipes_differ_from_the_default_only_where_they_say():
    """paper = the default with the terms beyond the paper off (it is today's default); distill = the default
    plus the distillation term at weight 1 from the pretended-CoT teacher (distill.prompt's default)."""
    from unimae.objective.config import PRETENDED_COT_PROMPT
    from unimae.training.config import recipes

    assert {"default", "paper", "distill"} <= set(recipes())
    default = load_config("default").flat()
    for name, changed in {
        "paper": {},
        "distill": {"distill.weight": 1.0},
    }.items():
        cfg = load_config(name)
        diff = {k: v for k, v in cfg.flat().items() if default[k] != v and k != "output_dir"}
        assert diff == changed, name
        assert cfg.output_dir == f"runs/{name}"
    assert load_config("distill").distill.prompt == PRETENDED_COT_PROMPT
