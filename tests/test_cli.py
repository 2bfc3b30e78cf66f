"""The CLI in-process: every command's --help, option spellings, one-line user errors, tracebacks for bugs."""

import functools

import numpy as np
import pytest
import yaml

from unimae.cli import COMMANDS, main
from unimae.cli.options import Command
from unimae.cli.spelling import normalize, one_line
from unimae.training.config import TrainConfig


def _names(table=COMMANDS, prefix=()):
    for name, entry in table.items():
        if isinstance(entry, dict):
            yield from _names(entry, (*prefix, name))
        else:
            yield [*prefix, name]


@pytest.mark.parametrize("names", list(_names()), ids=lambda n: " ".join(n))
def test_help_of_every_command_shows_examples(names, capsys):
    with pytest.raises(SystemExit) as info:
        main([*names, "--help"])
    assert info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_root_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def _recording(fn, seen: dict, result=None):
    """A stand-in for ``fn`` with its signature (the CLI reads it) that records the keyword arguments."""

    @functools.wraps(fn)
    def record(*args, **kwargs):
        seen.update(kwargs)
        return result

    return record


@pytest.fixture
def captured_train(monkeypatch):
    calls = []

    def fake(cfg: TrainConfig, resume: bool = False) -> None:  # typed: the CLI reads the signature
        calls.append((cfg, resume))

    monkeypatch.setattr("unimae.pipeline.train_and_export", fake)
    return calls


def test_train_options_overrides_and_config(captured_train, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 5\nlr: 1e-3\nlora: true\n")
    out = str(tmp_path / "run")
    assert main(["train", "--config", str(config), "steps=7", "--max-texts", "9", f"output_dir={out}"]) == 0
    assert main(["train", "--config", str(config), "--steps", "7", "--no-lora", "--output-dir", out]) == 0
    (a, _), (b, _) = captured_train
    assert (a.optim.steps, a.optim.lr, a.lora.enabled, a.data.max_texts, a.output_dir) == (
        7,
        1e-3,
        True,
        9,
        out,
    )
    assert (b.optim.steps, b.lora.enabled) == (7, False)
    # today's spellings: dotted overrides and options, nested config files
    config.write_text("optim:\n  steps: 5\n  lr: 1e-3\nlora:\n  enabled: true\n")
    assert (
        main(["train", "--config", str(config), "optim.steps=8", "--lora.r", "4", "--data.max-texts", "3"])
        == 0
    )
    c = captured_train[2][0]
    assert (c.optim.steps, c.optim.lr, c.lora.enabled, c.lora.r, c.data.max_texts) == (8, 1e-3, True, 4, 3)


def test_resume_without_config_reads_the_run_config(captured_train, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"steps": 11, "output_dir": str(run)}))
    assert main(["train", "--resume", "--output-dir", str(run), "lr=2e-4"]) == 0
    cfg, resume = captured_train[0]
    assert resume and cfg.optim.steps == 11 and cfg.optim.lr == 2e-4


BAD_TRAIN = [  # (argv tail, words the one-line message must hold)
    (["steps=abc"], "--optim.steps: expected int, got 'abc'"),
    (["steps=1.5"], "--optim.steps: expected int"),
    (["--steps", "0"], "optim.steps: input should be greater than or equal to 1, got 0"),
    (["lora=maybe"], "--lora.enabled: expected bool"),
    (["max_texts=all"], "--data.max_texts: expected int"),
    (["lr=fast"], "--optim.lr: expected float"),
    (["mar_mask_ratio=2"], "objective.mar_mask_ratio: input should be less than or equal to 1"),
    (["precision=fp8"], "--precision: expected one of fp32, bf16, fp16, got 'fp8'"),
    (["extra=3"], "--extra: expected dict"),
    (["stepz=3"], "stepz"),
]


@pytest.mark.parametrize("tail,expected", BAD_TRAIN, ids=[" ".join(t) for t, _ in BAD_TRAIN])
def test_bad_train_values_are_one_line(tail, expected, captured_train, capsys):
    assert main(["train", *tail]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unimae train: error:") and expected in err and err.count("\n") == 1
    assert not captured_train


@pytest.mark.parametrize(
    "text,expected",
    [("- a\n", "must hold a mapping"), ("stepz: 1\n", "unknown config field"), (None, "not found")],
)
def test_bad_config_file_is_one_line_naming_it(text, expected, tmp_path, captured_train, capsys):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and expected in err and err.count("\n") == 1


@pytest.mark.parametrize("k", ["0", "-2", "two"])
def test_rag_search_k_must_be_positive(k, tmp_path, capsys):
    assert main(["rag", "search", "query", "--index", str(tmp_path), "-k", k]) == 2
    assert "unimae rag search: error: --k" in capsys.readouterr().err


def test_encode_writes_npy_and_reports_the_path(tiny_gpt2, corpus_file, tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["encode", str(tiny_gpt2), "the cat", "a dog runs", "-o", str(out)]) == 0
    assert np.load(tmp_path / "v.npy").shape == (2, 32)
    assert str(tmp_path / "v.npy") in capsys.readouterr().out
    assert main(["encode", str(tiny_gpt2), "-i", str(corpus_file), "-o", str(out), "--pooling", "mean"]) == 0
    assert np.load(tmp_path / "v.npy").shape == (64, 32)


def test_user_errors_are_one_line(tiny_gpt2, tmp_path, capsys):
    blank = tmp_path / "blank.txt"
    blank.write_text("one\n\nthree\n")
    assert main(["encode", str(tiny_gpt2), "-i", str(blank), "-o", str(tmp_path / "v")]) == 2
    assert main(["encode", str(tiny_gpt2), "-o", str(tmp_path / "v")]) == 2  # nothing to encode
    assert main(["encode", str(tiny_gpt2), "x", "--pooling", "max", "-o", str(tmp_path / "v")]) == 2
    assert (
        main(["encode", str(tiny_gpt2), "x", "-i", str(tmp_path / "none.txt"), "-o", str(tmp_path / "v")])
        == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("unimae encode: error:") for line in err)
    assert "blank.txt" in err[0] and "nothing to encode" in err[1] and "--pooling" in err[2]
    assert "none.txt" in err[3]


@pytest.mark.parametrize("bug", [ValueError("a bug"), RuntimeError("a bug"), KeyError("a bug")])
def test_bugs_keep_their_traceback(bug, tiny_gpt2, monkeypatch, tmp_path):
    from unimae.encoding import files

    @functools.wraps(files.encode_to_file)
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(files, "encode_to_file", broken)
    with pytest.raises(type(bug), match="a bug"):
        main(["encode", str(tiny_gpt2), "text", "-o", str(tmp_path / "v")])


def test_interrupt_exits_130_with_the_resume_hint(monkeypatch, capsys):
    def interrupted(cfg: TrainConfig, resume: bool = False) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("unimae.pipeline.train_and_export", interrupted)
    assert main(["train", "steps=1"]) == 130
    assert "--resume" in capsys.readouterr().err


def test_serve_defaults_come_from_the_library(monkeypatch):
    import inspect

    from unimae.serving import server

    seen = {}
    monkeypatch.setattr(server, "serve", _recording(server.serve, seen))
    assert main(["serve", "some-model", "--no-truncate", "--port", "9001"]) == 0
    assert seen["model"] == "some-model" and seen["truncate"] is False and seen["port"] == 9001
    from unimae.serving.config import ServerConfig as config

    defaults = {n: p.default for n, p in inspect.signature(config).parameters.items()}
    given = {n: d for n, d in defaults.items() if n in seen and d is not inspect.Parameter.empty}
    assert len(given) > 3 and all(seen[n] == d for n, d in given.items() if n != "truncate")
    assert seen["ui"] is True  # the browser page is on by default
    assert main(["serve", "some-model", "--no-ui"]) == 0 and seen["ui"] is False


README_COMMANDS = [
    "train --config default steps=200 lr=5e-5",
    "train model=my/hf-model data=texts.jsonl lora=true output_dir=runs/mine",
    "train --resume --output-dir runs/mine",
    "export runs/mine -o exported/mine",
    "export runs/mine -o exported/mine --overwrite",
    'encode runs/mine "first text" "second text" -o vecs.npy',
    "encode runs/mine -i texts.txt",
    "demo runs/mine",
    "demo",
    'tsne "Base (mean)=smollm2-135m@mean" "UniMAE (EOS)=runs/default/model" -o results/figures/tsne.png',
    "report results --runs results/base results/base-mean",
    "data prepare",
    "eval smollm2-135m --pooling mean --benchmark offline",
    "lm-eval runs/default/model --label UniMAE -o results/unimae/lm-eval",
    "serve runs/default/model --api-key s3cret",
    "rag index examples/docs --model runs/default/model --index runs/rag-example",
    'rag ask "Who built the lighthouse?" --index runs/rag-example -k 3',
]


@pytest.mark.parametrize("line", README_COMMANDS)
def test_readme_commands_parse(line):
    import shlex

    from unimae.cli import parse

    chosen, cmd, ns = parse(shlex.split(line))
    assert cmd is not None and ns is not None


TRAIN_REFUSED_BY_THE_MODEL = [  # (argv tail, words of the one-line message)
    (
        ["max_length=6", "objective.prompt=the cat : {text} means in one word : the dog"],
        "no room for the text",
    ),
    (["lora=true", "lora.target_modules=[nope_proj]"], "nope_proj"),
]


@pytest.mark.parametrize("tail,expected", TRAIN_REFUSED_BY_THE_MODEL, ids=["prompt", "lora-target"])
def test_train_values_the_model_cannot_take_are_one_line(
    tail, expected, tiny_llama, corpus_file, tmp_path, capsys
):
    argv = ["train", f"model={tiny_llama}", f"data={corpus_file}", "steps=1", "batch_size=2"]
    assert main([*argv, f"output_dir={tmp_path / 'run'}", *tail]) == 2
    err = capsys.readouterr().err  # after the model's loading bar: the one line
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("unimae train: error:") and expected in last


def test_interrupt_in_other_commands_does_not_suggest_train_resume(tiny_gpt2, monkeypatch, tmp_path, capsys):
    from unimae.encoding import files

    @functools.wraps(files.encode_to_file)
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "encode_to_file", interrupted)
    assert main(["encode", str(tiny_gpt2), "text", "-o", str(tmp_path / "v")]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "interrupted" and "train" not in err


NO_CUDA = "cuda" if not __import__("torch").cuda.is_available() else "cuda:99"
BAD_OPTIONS = [  # (command and options with MODEL/OUT/IDX placeholders, words of the one-line message)
    ("encode MODEL a -o OUT --batch-size 0", "batch_size must be a whole number >= 1, got 0"),
    ("encode MODEL a -o OUT --batch-size -3", "got -3"),
    ("encode MODEL a -o OUT --truncate-dim 0", "truncate_dim must be >= 1, got 0"),
    ("encode MODEL a -o OUT --truncate-dim 999", "truncate_dim must be between 1 and 32, got 999"),
    ("encode MODEL a -o OUT --max-length 1", "max_length must be >= 2"),
    ("encode MODEL a -o OUT --max-length 999", "exceeds the model's context of 128"),
    ("encode MODEL a -o OUT --dtype int8", "--dtype: expected one of fp32"),
    (f"encode MODEL a -o OUT --device {NO_CUDA}", "CUDA"),
    ("encode MODEL a -o OUT --device nonsense", "not a device name"),
    ("rag index DOCS --model MODEL --index IDX --batch-size 0", "batch_size must be a whole number >= 1"),
    ("rag index DOCS --model MODEL --index IDX --chunk-words 5 --overlap 5", "overlap < chunk_words"),
    (f"rag index DOCS --model MODEL --index IDX --device {NO_CUDA}", "CUDA"),
    ("serve MODEL --max-length 0", "max_length must be >= 2"),
    (f"serve MODEL --device {NO_CUDA}", "CUDA"),
    ("serve MODEL --port 99999", "port must be a whole number from 0 to 65535, got 99999"),
    ("serve MODEL --log-level nonsense", "--log_level: expected one of critical"),
]


@pytest.mark.parametrize("line,expected", BAD_OPTIONS, ids=[line for line, _ in BAD_OPTIONS])
def test_bad_option_values_are_one_line(line, expected, tiny_gpt2, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("the cat .")
    where = {"MODEL": tiny_gpt2, "OUT": tmp_path / "v", "IDX": tmp_path / "idx", "DOCS": docs}
    argv = [str(where.get(token, token)) for token in line.split()]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("unimae ") and expected in last, err
    assert not (tmp_path / "v.npy").exists() and not (tmp_path / "idx" / "manifest.json").exists()


def _fake_command(**hints):
    from jsonargparse import ArgumentParser

    return Command(ArgumentParser(), run=print, hints=hints)


def test_refused_values_are_named_from_the_option_type_not_the_parser_wording():
    """The one line comes from the option's type (pydantic), whatever jsonargparse's message says."""
    from argparse import ArgumentError
    from typing import Literal

    from pydantic import PositiveInt

    cmd = _fake_command(k=PositiveInt, precision=Literal["fp32", "bf16"], lr=float | None, name=str)
    reworded = ArgumentError(None, "some new wording\n  over lines")
    cases = {
        "--k=0": "--k: input should be greater than 0, got 0",
        "--k=two": "--k: expected int, got 'two'",
        "--precision=fp8": "--precision: expected one of fp32, bf16, got 'fp8'",
        "--lr=fast": "--lr: expected float, got 'fast'",
    }
    for token, expected in cases.items():
        assert one_line(reworded, ["--name=3", "--lr=null", token], cmd) == expected
    # nothing the types refuse: the parser's own message, on one line
    assert one_line(reworded, ["--k=3", "--stepz=1"], cmd) == "some new wording over lines"


def test_spellings_become_jsonargparse_options():
    hints = {
        "tasks": list[str] | None,
        "resume": bool,
        "output": str,
        "output_dir": str,
        "lora.enabled": bool,
    }
    cmd = _fake_command(**hints)
    cmd.renames = {"lora": "lora.enabled"}
    argv = ["--tasks", "A", "B", "--resume", "-o", "x", "--output-dir", "y", "--no-lora", "--resume", "false"]
    assert normalize(argv, cmd) == [
        '--tasks=["A", "B"]',
        "--resume=true",
        "--output=x",
        "--output_dir=y",
        "--lora.enabled=false",
        "--resume=false",
    ]
