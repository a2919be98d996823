"""Where hullft keeps derived artefacts (converted models, indexes)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$HULLFT_CACHE``, else ``$XDG_CACHE_HOME/hullft``, else ``~/.cache/hullft``."""
    env = os.environ.get("HULLFT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hullft"


def expand(path: str | os.PathLike[str]) -> Path:
    """Expand ``~`` and environment variables in a user-supplied path."""
    return Path(os.path.expandvars(os.fspath(path))).expanduser()
