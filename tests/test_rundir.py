"""Run-directory claims: one driver at a time, a dead owner frees it, run.json checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.cli import main
from hullft.rundir import (
    LOCK_FILE,
    RUN_META,
    RunConfigMismatchError,
    RunDirLockedError,
    RunMetaCorruptError,
    claim_run_dir,
)
from tests.conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parent.parent
CFG = {"selection": {"n": 2}, "cluster": {"num_cpus": 1}}

_HOLDER = """
import sys, time
from hullft.rundir import claim_run_dir
lease = claim_run_dir(sys.argv[1], {"selection": {"n": 2}})
print("claimed", flush=True)
time.sleep(600)
"""


def _holder(run_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
    return proc


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
    }


def test_second_claim_fails_naming_dir_and_holder_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    try:
        before = _tree(run_dir)
        with pytest.raises(RunDirLockedError) as err:
            claim_run_dir(run_dir, {"selection": {"n": 2}})
        assert str(run_dir) in str(err.value) and f"pid {proc.pid}" in str(err.value)
        assert _tree(run_dir) == before
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_owner_leaves_nothing_stuck(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with claim_run_dir(run_dir, {"selection": {"n": 2}}) as lease:
        assert lease.held
        holder = json.loads((run_dir / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
    # released: another claim in this process succeeds
    claim_run_dir(run_dir, {"selection": {"n": 2}}).release()


def NO_CLUSTER(config):
    return {k: v for k, v in config.items() if k != "cluster"}


def test_other_config_is_refused_but_neutral_sections_may_differ(tmp_path: Path) -> None:
    claim_run_dir(tmp_path, CFG, comparable=NO_CLUSTER).release()
    claim_run_dir(tmp_path, {**CFG, "cluster": {"num_cpus": 8}}, comparable=NO_CLUSTER).release()
    with pytest.raises(RunConfigMismatchError, match=r"selection\.n"):
        claim_run_dir(tmp_path, {**CFG, "selection": {"n": 3}}, comparable=NO_CLUSTER)
    # the refused claim released its lock
    claim_run_dir(tmp_path, CFG, comparable=NO_CLUSTER).release()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"config": 3}'])
def test_corrupt_run_json_names_the_file(tmp_path: Path, content: str) -> None:
    (tmp_path / RUN_META).write_text(content)
    with pytest.raises(RunMetaCorruptError, match=str(tmp_path / RUN_META)):
        claim_run_dir(tmp_path, CFG)
    assert (tmp_path / RUN_META).read_text() == content


def test_missing_data_path_leaves_no_run_directory(tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "run",
            "experiment=smoke",
            "data.paths=[/nonexistent/corpus.jsonl]",
            f"experiment.output_dir={tmp_path / 'runs'}",
        ]
    )
    assert rc == 1
    assert "/nonexistent/corpus.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_run_that_raises_releases_its_run_directory(tmp_path: Path) -> None:
    """A library caller that catches a run's error can claim its directory again:
    the lease ends when `run_pipeline` raises, not when the process exits."""
    from actors.driver import run_pipeline
    from tests.conftest import smoke_config

    not_a_dir = tmp_path / "index-file"
    not_a_dir.write_text("a file where the index should go")
    cfg = smoke_config(not_a_dir, tmp_path / "runs", ["experiment.run_id=raises"])
    # The caller keeps the error (and so its traceback's frames) alive, as a library
    # caller that logs or re-raises it later does; the lease must not depend on them.
    with pytest.raises(NotADirectoryError, match="existing file") as caught:
        run_pipeline(cfg, progress=False)
    run_dir = tmp_path / "runs" / "raises"
    assert (run_dir / RUN_META).exists()  # it was claimed before the index step failed
    with claim_run_dir(run_dir, json.loads((run_dir / RUN_META).read_text())["config"]):
        pass
    assert caught.value is not None


def test_second_driver_on_a_live_run_fails_fast(smoke_index_dir: Path, tmp_path: Path) -> None:
    """Two real `hullft run` drivers on one run directory: the second exits non-zero
    naming the directory and the first driver's pid and writes nothing; the first
    (paused meanwhile, so that it surely still runs) completes with every row once."""
    from hullft.results import read_results

    cmd = [
        sys.executable,
        "-m",
        "actors.cli",
        "run",
        "experiment=smoke",
        f"index.dir={smoke_index_dir}",
        f"experiment.output_dir={tmp_path}",
        "experiment.run_id=twice",
        "queries.per_domain=1",
        "experiment.limit=2",
        "cluster.num_cpus=2",
    ]
    env = {**os.environ, "HULLFT_LOG_LEVEL": "WARNING", "RAY_ADDRESS": ""}
    run_dir = tmp_path / "twice"
    first = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while f'"pid": {first.pid}' not in _read(run_dir / LOCK_FILE):
            assert first.poll() is None and time.monotonic() < deadline, "first never claimed"
            time.sleep(0.1)
        first.send_signal(signal.SIGSTOP)
        before = _tree(run_dir)
        second = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
        )
        assert second.returncode != 0
        assert str(run_dir) in second.stderr and f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert _tree(run_dir) == before
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == 0, err[-3000:]
    df = read_results(run_dir)
    keys = list(zip(df["query_id"], df["method"], strict=True))
    assert len(keys) == len(set(keys)) == 2 * 4


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
