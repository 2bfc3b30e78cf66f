import numpy as np

from unimae.cli import build_parser, main


def test_help_lists_subcommands(capsys):
    for cmd in ([], ["train"], ["encode"], ["export"]):
        try:
            build_parser().parse_args([*cmd, "--help"])
        except SystemExit:
            pass
    out = capsys.readouterr().out
    for word in ("train", "encode", "export", "key=value", "--resume", "--pooling"):
        assert word in out


def test_encode_writes_npy(tiny_gpt2, corpus_file, tmp_path, capsys):
    out = tmp_path / "v.npy"
    assert main(["encode", str(tiny_gpt2), "the cat", "a dog runs", "-o", str(out)]) == 0
    assert np.load(out).shape == (2, 32)
    assert main(["encode", str(tiny_gpt2), "-i", str(corpus_file), "-o", str(out), "--pooling", "mean"]) == 0
    assert np.load(out).shape == (64, 32)


def test_errors_are_messages_not_tracebacks(tiny_gpt2, tmp_path, capsys):
    empty = tmp_path / "e.txt"
    empty.write_text("")
    assert main(["train", f"model={tiny_gpt2}", f"data={empty}", f"output_dir={tmp_path / 'r'}"]) == 2
    assert main(["encode", str(tmp_path / "no_model"), "text"]) == 2
    assert main(["train", "stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "unknown config field" in err and "does not exist" in err
