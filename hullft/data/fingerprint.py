"""Content digests of input files: what an index was built from, by content.

An index's identity records a BLAKE2b digest of every input file's bytes, so a
corpus edited in place (``sed -i`` keeping the size) or replaced by another file
with the same name and size yields a different identity and is never served from
the old index.

Hashing streams the file in 1 MiB chunks (BLAKE2b: several hundred MB/s per
core). Digests are cached per machine in ``$HULLFT_CACHE/input-digests.json``
keyed by the file's device, inode, size, mtime and ctime (git's index uses the same stat data to skip unchanged files):
any write, ``cp -p``, ``touch -r`` or rename changes the ctime, which user space
cannot set, so a cache hit means the bytes have not been rewritten. A rerun on an
unchanged corpus therefore hashes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

from hullft.paths import cache_root

log = logging.getLogger(__name__)

DIGEST_NAME = "blake2b"
_CHUNK = 1 << 20
_CACHE_FILE = "input-digests.json"
_CACHE_MAX = 20_000
"""Entries kept in the cache (oldest dropped first)."""


def hash_file(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-128 hex digest of the file's bytes, streamed."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(path: Path) -> str:
    st = os.stat(path)
    return f"{os.path.realpath(path)}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def _cache_path() -> Path:
    return cache_root() / _CACHE_FILE


def _load_cache() -> dict[str, str]:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save_cache(cache: dict[str, str]) -> None:
    path = _cache_path()
    items = list(cache.items())[-_CACHE_MAX:]
    # A cache that cannot be written only costs a rehash next time.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(items)))
        os.replace(tmp, path)


def file_digests(paths: list[Path]) -> list[str | None]:
    """The content digest of each file in ``paths`` (cached by stat data); ``None``
    for a file that cannot be read (the build counts it as ``unreadable_file``)."""
    cache = _load_cache()
    out: list[str | None] = []
    changed = False
    for path in paths:
        try:
            key = _stat_key(path)
            digest = cache.get(key)
            if digest is None:
                log.info("hashing input %s", path)
                digest = hash_file(path)
        except OSError:
            out.append(None)
            continue
        if key not in cache:
            # the file may have changed while we read it: cache only a stable result
            with contextlib.suppress(OSError):
                if _stat_key(path) == key:
                    cache[key] = digest
                    changed = True
        out.append(digest)
    if changed:
        _save_cache(cache)
    return out
