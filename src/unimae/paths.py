"""Where unimae keeps converted models, prepared data and other caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The unimae cache: ``$UNIMAE_CACHE`` if set, else ``$XDG_CACHE_HOME/unimae`` or ``~/.cache/unimae``."""
    env = os.environ.get("UNIMAE_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "unimae"
    root.mkdir(parents=True, exist_ok=True)
    return root


def package_file(package: str, relative: str) -> Path:
    """Path of a data file shipped inside an installed package, found without importing the package.

    Raises FileNotFoundError with an install hint when the package or the file is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Python package '{package}' is not installed (pip install {package.replace('_', '-')})"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed package '{package}'")
    return path
