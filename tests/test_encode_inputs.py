"""Encode inputs from files: row i of the output is record i of the input, in every format, or an error
that names the file and line (issue 10: blank lines were dropped silently, shifting every later row)."""

import json

import numpy as np
import pytest

from unimae.encoding.encoder import Encoder
from unimae.encoding.files import InputFileError, encode_to_file, read_inputs
from unimae.errors import UserError

TEXTS = ["the cat runs .", "a dog sings", "the river , the city", 'she says "hi" , ok']


def _write(path, records, text_field="text"):
    """``records`` as a file of ``path``'s kind; a None record is a blank line / empty field."""
    if path.suffix == ".txt":
        body = "\n".join(r or "" for r in records) + "\n"
    elif path.suffix == ".jsonl":
        body = (
            "\n".join(
                json.dumps({text_field: r, "id": i}) if r is not None else "" for i, r in enumerate(records)
            )
            + "\n"
        )
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        quote = lambda r: '"' + (r or "").replace('"', '""') + '"'  # noqa: E731
        body = f"id{sep}{text_field}\n" + "".join(f"{i}{sep}{quote(r)}\n" for i, r in enumerate(records))
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".tsv"])
def test_every_format_reads_all_records_in_order(tmp_path, suffix):
    path = _write(tmp_path / f"in{suffix}", TEXTS)
    assert read_inputs(path) == TEXTS


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".tsv"])
@pytest.mark.parametrize("ending", ["\r\n", "\r"], ids=["crlf", "cr"])
@pytest.mark.parametrize("bom", [False, True], ids=["", "bom"])
def test_every_format_takes_every_line_ending_and_a_bom(tmp_path, suffix, ending, bom):
    """Old Mac files (CR only) are one row per line, not one row; a BOM (Windows editors) is not text."""
    path = _write(tmp_path / f"in{suffix}", TEXTS)
    body = path.read_text(encoding="utf-8").replace("\n", ending)
    path.write_bytes(("\ufeff" if bom else "").encode() + body.encode())
    assert read_inputs(path) == TEXTS


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".tsv"])
@pytest.mark.parametrize("bad", [0, 2, 3])
def test_blank_record_is_refused_with_its_line(tmp_path, suffix, bad):
    records = list(TEXTS)
    records[bad] = None if suffix in (".txt", ".jsonl") else "  "
    path = _write(tmp_path / f"in{suffix}", records)
    line = bad + 1 + (suffix in (".csv", ".tsv"))  # the header row is line 1
    with pytest.raises(UserError, match=rf"{path.name}:{line}:"):
        read_inputs(path)


def test_whitespace_line_in_txt_and_missing_field_in_jsonl(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("the cat\n \t \nthe dog\n")
    with pytest.raises(InputFileError, match=r"a.txt:2: blank"):
        read_inputs(txt)
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"text": "the cat"}\n{"body": "the dog"}\n')
    with pytest.raises(InputFileError, match=r"b.jsonl:2: no text"):
        read_inputs(jsonl)
    jsonl.write_text('{"text": "the cat"}\n{"text": 7}\n')
    with pytest.raises(InputFileError, match=r"b.jsonl:2: the text is a int"):
        read_inputs(jsonl)
    assert read_inputs(_write(tmp_path / "c.jsonl", TEXTS, "body"), text_field="body") == TEXTS


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_non_utf8_names_file_and_line(tmp_path, suffix):
    path = _write(tmp_path / f"in{suffix}", TEXTS)
    data = path.read_bytes().replace(b"dog", b"d\xffg")
    path.write_bytes(data)
    line = 2 + (suffix == ".csv")
    with pytest.raises(InputFileError, match=rf"in{suffix}:{line}: not valid UTF-8"):
        read_inputs(path)


def test_txt_lines_split_on_newline_only(tmp_path):
    """A form feed or \\u2028 inside a line is text, not a line break (str.splitlines would split there)."""
    path = tmp_path / "in.txt"
    path.write_text("the cat\x0cruns\r\na dog\u2028sings\n", encoding="utf-8", newline="")
    assert read_inputs(path) == ["the cat\x0cruns", "a dog\u2028sings"]


def test_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="missing.txt does not exist"):
        read_inputs(tmp_path / "missing.txt")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(InputFileError, match="unsupported"):
        read_inputs(tmp_path / "x.parquet")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(InputFileError, match="no texts"):
        read_inputs(tmp_path / "empty.txt")
    (tmp_path / "t.csv").write_text("id,body\n1,the cat\n")
    with pytest.raises(InputFileError, match="t.csv:1: .*'text' column"):
        read_inputs(tmp_path / "t.csv")


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_encode_to_file_rows_align_and_path_is_reported(tiny_gpt2, tmp_path, suffix):
    enc = Encoder.from_pretrained(str(tiny_gpt2), device="cpu")
    texts = read_inputs(_write(tmp_path / f"in{suffix}", TEXTS))
    written = encode_to_file(enc, texts, tmp_path / "out", batch_size=2)
    assert written == tmp_path / "out.npy" and written.is_file()  # numpy's suffix, and the path says so
    vecs = np.load(written)
    for i, text in enumerate(TEXTS):  # row i is text i, whatever the length-sorted batching did
        np.testing.assert_allclose(vecs[i], enc.encode(text, normalize_embeddings=True), atol=1e-5)
    kept = encode_to_file(enc, texts, tmp_path / "vecs.npy", truncate_dim=4)
    assert kept == tmp_path / "vecs.npy" and np.load(kept).shape == (len(TEXTS), 4)


def test_text_that_is_not_unicode_is_refused_naming_the_record(tmp_path, tiny_gpt2):
    from unimae.data.corpus import CorpusError, load_texts

    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "the cat"}\n{"text": "bad \\udc80"}\n')
    with pytest.raises(InputFileError, match=r"in.jsonl:2: .*not UTF-8"):
        read_inputs(path)
    with pytest.raises(CorpusError, match=r"in.jsonl, line 2: field 'text': .*not UTF-8"):
        load_texts(str(path))
    encoder = Encoder.from_pretrained(str(tiny_gpt2), device="cpu")
    with pytest.raises(UserError, match=r"texts\[1\] cannot be embedded: a lone surrogate U\+D800"):
        encoder.encode(["fine", "\ud800"])
    with pytest.raises(UserError, match=r"texts\[0\] is empty"):
        encoder.encode([" "])


def test_command_line_bytes_that_are_not_utf8_are_one_line(tmp_path, tiny_gpt2):
    """Real argv bytes (Python keeps them as surrogates): encode, rag search and rag ask."""
    import subprocess
    import sys

    cli = [sys.executable, "-m", "unimae.cli"]
    runs = [
        [*cli, "encode", str(tiny_gpt2).encode(), b"fine", b"caf\xe9", b"-o", str(tmp_path / "v").encode()],
        [*cli, "rag", "search", b"caf\xe9", b"--index", str(tmp_path).encode()],
        [*cli, "rag", "ask", b"\xff", b"--index", str(tmp_path).encode()],
    ]
    wanted = ["texts item 2: byte 0xe9", "query: byte 0xe9", "question: byte 0xff"]
    for argv, want in zip(runs, wanted, strict=True):
        proc = subprocess.run(argv, capture_output=True)
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and want in err[0], err
    assert not (tmp_path / "v.npy").exists()


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_field_longer_than_csvs_own_cap_is_read(tmp_path, suffix):
    long = "word " * 40_000  # 200,000 characters; csv refuses fields over 131,072 by default
    path = _write(tmp_path / f"in{suffix}", ["the cat", long.strip(), "the dog"])
    assert [len(t) for t in read_inputs(path)] == [7, len(long.strip()), 7]


def test_a_fifo_or_a_link_to_a_device_is_said_as_it_is(tmp_path, capsys):
    import os

    from unimae.cli import main

    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    (tmp_path / "c.yaml").symlink_to("/dev/zero")
    with pytest.raises(InputFileError, match="pipe.txt is a FIFO, not a regular file"):
        read_inputs(tmp_path / "pipe.txt")
    with pytest.raises(InputFileError, match="is a character device, not a regular file"):
        read_inputs(tmp_path / "zero.txt")
    with pytest.raises(InputFileError, match="none.txt does not exist"):
        read_inputs(tmp_path / "none.txt")
    assert main(["encode", "any-model", "-i", str(tmp_path / "pipe.txt")]) == 2  # answered, not blocked
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "a FIFO" in err[0] and "c.yaml is a character device, not a regular file" in err[1]
