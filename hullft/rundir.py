"""Claiming a run directory: one driver at a time, one config per run.

A run directory (``<output_dir>/<run_id>/``) is written by exactly one driver.
:func:`claim_run_dir` takes an exclusive ``flock`` on ``<run_dir>/.driver.lock``
and holds it for the driver's lifetime. The kernel drops the lock when the
process exits, however it exits (SIGKILL and OOM included), so a crashed owner
never leaves the directory stuck and a rerun resumes at once; a second driver
started while the first lives fails fast, naming the holder (pid@host), before
writing anything.

Only then is ``run.json`` (the config that wrote the results) compared with the
current config and (re)written: a run directory never mixes the rows of two
configs, except for sections that do not change a row.

File systems: ``flock`` is exclusive across processes on one machine on every
local file system. On NFS, Linux (since 2.6.12) emulates ``flock`` with NFS
byte-range locks, which are exclusive across clients on NFSv4 (and v3 with a
running lock manager) and which the server releases when a dead client's lease
expires (about 90 s on NFSv4), so a crashed driver's directory is free again after
that. Mounts with ``nolock`` / ``local_lock=all`` keep locks client-local: on those
two drivers on different machines are not kept apart; run one driver per run id.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

LOCK_FILE = ".driver.lock"
RUN_META = "run.json"


class RunDirLockedError(RuntimeError):
    """Another live driver is writing to the run directory."""


class RunConfigMismatchError(ValueError):
    """The run directory holds results of a different config."""


class RunMetaCorruptError(ValueError):
    """``run.json`` of the run directory cannot be read."""


class RunDirLease:
    """The exclusive claim on a run directory; :meth:`release` (or process exit) ends it."""

    def __init__(self, run_dir: Path, fh: IO[str] | None):
        self.run_dir = run_dir
        self._fh = fh

    @property
    def held(self) -> bool:
        return self._fh is not None

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.seek(0)
            fh.truncate()  # no stale holder in the file once we are gone
        finally:
            fh.close()  # closing drops the flock

    def __enter__(self) -> RunDirLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_dir(
    run_dir: str | os.PathLike[str],
    config: Mapping[str, Mapping[str, Any]],
    *,
    comparable: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict,
) -> RunDirLease:
    """Lock ``run_dir`` for this process, check ``run.json`` against ``config`` and
    record ``config`` there.

    ``config`` is the JSON-able config by section; ``comparable`` maps a config (this
    one, or the one recorded in ``run.json``) to the part that runs resuming one
    another must agree on (``hullft.pipeline.row_config``: what can change a row).
    Raises :class:`RunDirLockedError` when another driver holds the directory,
    :class:`RunConfigMismatchError` when it holds another config's results and
    :class:`RunMetaCorruptError` when ``run.json`` is unreadable; in each case
    nothing in the directory is changed.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = _lock(run_dir)
    lease = RunDirLease(run_dir, fh)
    try:
        _check_config(run_dir, config, comparable)
        _write_holder(fh)
        _write_meta(run_dir, config)
    except BaseException:
        lease.release()
        raise
    return lease


def _lock(run_dir: Path) -> IO[str] | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no protection against two drivers
        log.warning("no fcntl on this platform: %s is not locked against a second driver", run_dir)
        return None
    path = run_dir / LOCK_FILE
    # "a+" creates the file if needed and never truncates it: a driver that loses the
    # race must not erase the holder's pid.
    fh = open(path, "a+")  # noqa: SIM115 - held open for the lease's lifetime
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = _describe_holder(fh.read())
        fh.close()
        raise RunDirLockedError(
            f"run directory {run_dir} is in use by another driver ({holder}); "
            "wait for it to finish (a rerun of the same command then resumes), stop it, "
            "or choose another experiment.run_id / experiment.output_dir"
        ) from None
    except OSError:
        fh.close()
        raise
    return fh


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, since {info['started_at']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "holder still starting"


def _write_holder(fh: IO[str] | None) -> None:
    if fh is None:
        return
    info = {
        "pid": os.getpid(),
        "host": platform.node(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps(info))
    fh.flush()


def read_run_meta(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``run.json`` of ``run_dir`` (``None`` when absent); an unreadable one is an
    error naming the file."""
    path = Path(run_dir) / RUN_META
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        data = exc
    if not isinstance(data, dict) or not isinstance(data.get("config", {}), dict):
        why = data if isinstance(data, Exception) else "not a JSON object with a config"
        raise RunMetaCorruptError(
            f"{path} is unreadable ({why}); it records which config wrote the results "
            "next to it. Restore it, or start over in a new run directory (another "
            "experiment.run_id or experiment.output_dir)"
        )
    return data


def _check_config(
    run_dir: Path,
    config: Mapping[str, Mapping[str, Any]],
    comparable: Callable[[Mapping[str, Any]], Mapping[str, Any]],
) -> None:
    previous = read_run_meta(run_dir)
    if previous is None:
        return
    now = comparable(config)
    before = comparable(previous.get("config", {}))
    if before == now:
        return
    diff = sorted(
        f"{s}.{k}"
        for s in sorted(set(now) | set(before))
        for k in sorted(set(now.get(s, {})) | set(before.get(s, {})))
        if before.get(s, {}).get(k) != now.get(s, {}).get(k)
    )
    raise RunConfigMismatchError(
        f"{run_dir} holds results of a different config (differs in {diff}); "
        "choose another experiment.run_id or output_dir"
    )


def _write_meta(run_dir: Path, config: Mapping[str, Any]) -> None:
    meta = run_dir / RUN_META
    tmp = meta.with_name(meta.name + ".tmp")
    tmp.write_text(json.dumps({"run_id": run_dir.name, "config": config}, indent=2))
    os.replace(tmp, meta)
