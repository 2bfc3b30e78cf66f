"""scripts/setup.sh stops on a failed install and shows pip's message (it once piped pip through grep
and `|| true`, which hid every failure)."""

import subprocess
from pathlib import Path

SETUP = Path(__file__).parents[1] / "scripts" / "setup.sh"


def _pip_install(tmp_path: Path, exit_code: int) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pip").write_text(
        f"#!/bin/sh\necho 'WARNING: option x is ignored'\necho 'ERROR: no such wheel' >&2\nexit {exit_code}\n"
    )
    (fake / "pip").chmod(0o755)
    function = subprocess.run(
        ["sed", "-n", "/^pip_install()/,/^}/p", str(SETUP)], capture_output=True, text=True
    )
    assert "pip_install()" in function.stdout
    script = (
        f"set -euo pipefail\nexport PATH={fake}:$PATH\n{function.stdout}\npip_install foo==1\necho after\n"
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


def test_a_failed_install_stops_setup_with_pips_message(tmp_path):
    done = _pip_install(tmp_path, 3)
    assert done.returncode == 3 and "after" not in done.stdout
    assert "ERROR: no such wheel" in done.stderr and "'pip install foo==1' failed" in done.stderr
    assert "is ignored" not in done.stderr  # only that notice is filtered


def test_a_good_install_goes_on(tmp_path):
    done = _pip_install(tmp_path, 0)
    assert done.returncode == 0 and "after" in done.stdout
