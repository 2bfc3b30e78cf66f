"""unimae.io: what is written honours the umask, temporaries of killed writers are cleaned up, disk errors
are one line, and a path's kind is said as it is (a FIFO is not "missing")."""

import errno
import os
import stat

import pytest

from unimae import io
from unimae.errors import UserError


@pytest.fixture
def umask():
    """Set a umask for the test, restored after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_get_the_permissions_the_umask_allows(mask, file_mode, dir_mode, umask, tmp_path):
    umask(mask)
    assert io.current_umask() == mask
    assert _mode(io.atomic_write_bytes(tmp_path / "a.npy", b"x")) == file_mode
    assert _mode(io.atomic_write_json(tmp_path / "b.json", {"a": 1})) == file_mode
    with io.atomic_dir(tmp_path / "export") as tmp:
        (tmp / "f.bin").write_bytes(b"x")
    assert _mode(tmp_path / "export") == dir_mode
    assert _mode(tmp_path / "export" / "f.bin") == file_mode


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)  # a process that has exited
    mine = tmp_path / f".out.npy.{os.getpid()}.abc123.tmp"  # this process's: alive, kept
    stale_file = tmp_path / f".out.npy.{pid}.abc123.tmp"
    stale_dir = tmp_path / f".model.stage.{pid}.xyz_9.tmp"
    other = tmp_path / f".other.{pid}.abc.tmp"  # another target's: not ours to clean here
    for p in (mine, stale_file, other):
        p.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / "weights").write_bytes(b"x")
    io.atomic_write_bytes(tmp_path / "out.npy", b"new")
    assert not stale_file.exists() and mine.exists() and other.exists()
    assert io.remove_stale_temps(tmp_path / "model") == [stale_dir] and not stale_dir.exists()


def test_legacy_temporaries_without_a_pid_go_after_a_day(tmp_path):
    old, stage = tmp_path / ".model.ab12cd34.tmp", tmp_path / ".model.stage.ab12cd34"
    new, mine = tmp_path / ".model.zz12cd34.tmp", tmp_path / ".model.notes"  # recent; not a temporary
    for p in (old, stage, new, mine):
        p.mkdir()
    for p in (old, stage, mine):
        os.utime(p, (0, 0))
    io.remove_stale_temps(tmp_path / "model")
    assert not old.exists() and not stage.exists() and new.exists() and mine.exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EISDIR])
def test_disk_errors_become_one_line_user_errors(code, tmp_path, monkeypatch):
    real = os.fsync

    def failing(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(io.os, "fsync", failing)
    with pytest.raises(io.DiskError) as info, io.disk_errors(tmp_path / "v.npy"):
        io.atomic_write_bytes(tmp_path / "v.npy", b"x" * 100)
    monkeypatch.setattr(io.os, "fsync", real)
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    assert str(tmp_path / "v.npy") in message and os.strerror(code) in message
    assert list(tmp_path.iterdir()) == []  # no temporary left, no half file
    with (
        pytest.raises(KeyError),
        io.disk_errors("x"),
    ):  # not an OS error: unchanged (a bug keeps its traceback)
        raise KeyError("bug")


def test_check_writable_before_the_work(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(io.DiskError, match="is a folder; give a file name"):
        io.check_writable(tmp_path / "folder")
    with pytest.raises(io.DiskError, match="is a file, not a folder"):
        io.check_writable(tmp_path / "file", folder=True)
    with pytest.raises(io.DiskError, match="file is a file, not a folder"):
        io.check_writable(tmp_path / "file" / "sub" / "v.npy")
    assert io.check_writable(tmp_path / "new" / "deeper" / "v.npy") == tmp_path / "new" / "deeper" / "v.npy"
    assert not (tmp_path / "new").exists()  # checked, nothing created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]  # the probe is gone


def test_check_writable_on_a_read_only_folder(tmp_path, monkeypatch):
    """A read-only disk (EROFS) as the probe file meets it: before any work, one line."""
    real = io.tempfile.mkstemp

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(kwargs.get("dir")))

    monkeypatch.setattr(io.tempfile, "mkstemp", read_only)
    with pytest.raises(io.DiskError, match="Read-only file system"):
        io.check_writable(tmp_path / "v.npy")
    monkeypatch.setattr(io.tempfile, "mkstemp", real)


def test_file_kind_and_regular_files(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.txt"
    zero.symlink_to("/dev/zero")
    broken = tmp_path / "broken.txt"
    broken.symlink_to(tmp_path / "gone")
    (tmp_path / "ok.txt").write_text("x")
    assert io.file_kind(fifo) == "a FIFO" and io.file_kind(zero) == "a character device"
    assert io.file_kind(broken) == "a broken symlink" and io.file_kind(tmp_path / "none") == "missing"
    assert io.require_regular_file(tmp_path / "ok.txt") == tmp_path / "ok.txt"
    with pytest.raises(UserError, match="pipe.txt is a FIFO, not a regular file"):
        io.require_regular_file(fifo)
    with pytest.raises(UserError, match=r"zero.txt \(-> /dev/zero\) is a character device"):
        io.require_regular_file(zero)
    with pytest.raises(UserError, match="none does not exist"):
        io.require_regular_file(tmp_path / "none")


# --- disk errors in each command: before the work where the target is wrong, one line when the disk fails --


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_encode_disk_errors(tiny_gpt2, tmp_path, monkeypatch, capsys):
    from unimae.cli import main

    (tmp_path / "v.npy").mkdir()  # the target is a folder: refused before the model loads
    assert main(["encode", "no-such-model", "a", "-o", str(tmp_path / "v.npy")]) == 2
    assert "v.npy is a folder; give a file name" in _last_error(capsys)
    monkeypatch.setattr(io.os, "fsync", _enospc)  # the disk fills up while writing
    assert main(["encode", str(tiny_gpt2), "a", "-o", str(tmp_path / "w")]) == 2
    assert f"cannot write {tmp_path / 'w.npy'}: No space left on device" in _last_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npy"]  # no half file, no temporary


def test_train_disk_errors(tiny_llama, corpus_file, tmp_path, monkeypatch, capsys):
    from unimae.cli import main

    (tmp_path / "file").write_text("x")
    argv = ["train", f"model={tiny_llama}", f"data={corpus_file}", "steps=1", "batch_size=2", "max_length=8"]
    assert main([*argv, f"output_dir={tmp_path / 'file'}"]) == 2  # before loading anything
    assert "file is a file, not a folder" in _last_error(capsys)
    monkeypatch.setattr("unimae.training.loop.save_checkpoint", _enospc)
    assert main([*argv, f"output_dir={tmp_path / 'run'}"]) == 2
    last = _last_error(capsys)
    assert "checkpoint: No space left on device" in last and "train --resume" in last


def test_export_and_rag_disk_errors(tiny_gpt2, tmp_path, monkeypatch, capsys):
    from unimae.cli import main

    (tmp_path / "idx").write_text("x")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("the cat .")
    rag = ["rag", "index", str(tmp_path / "docs"), "--model", str(tiny_gpt2), "--index"]
    assert main([*rag, str(tmp_path / "idx")]) == 2  # the index folder is a file
    assert "idx is a file, not a folder" in _last_error(capsys)
    monkeypatch.setattr(io.os, "fsync", _enospc)
    assert main([*rag, str(tmp_path / "new")]) == 2
    assert "No space left on device; the index is as it was" in _last_error(capsys)
    assert not (tmp_path / "new" / "manifest.json").exists()
    assert main(["export", str(tiny_gpt2), "-o", str(tmp_path / "out")]) == 2
    assert "No space left on device" in _last_error(capsys) and not (tmp_path / "out").exists()
