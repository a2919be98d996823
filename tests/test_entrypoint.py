"""The real entrypoint, end to end: `hullft run experiment=smoke` in a subprocess;
killing the driver mid-run and rerunning the same command completes the run
without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hullft.results import read_results
from tests.conftest import HANG_GUARD_S

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parent.parent


def _cmd(index_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "actors.cli",
        "run",
        "experiment=smoke",
        f"index.dir={index_dir}",
        f"experiment.output_dir={out}",
        "experiment.run_id=e2e",
        "cluster.num_cpus=2",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "HULLFT_LOG_LEVEL": "WARNING", "RAY_ADDRESS": ""}


def _part_per_query_cmd(index_dir: Path, out: Path) -> tuple[list[str], Path]:
    """A run that commits a part per query (4 rows), so that an interruption surely
    lands mid-run after commits; and where its parts go."""
    cmd = _cmd(
        index_dir,
        out,
        "queries.per_domain=2",
        "cluster.max_in_flight_per_worker=1",
        "experiment.results_part_rows=4",
    )
    return cmd, out / "e2e" / "results"


# A shell starts a background job (`make test &`, `nohup ... &`) with SIGINT ignored,
# every process below it inherits that, and Python then installs no KeyboardInterrupt
# handler. The Ctrl-C test runs the CLI through this prologue so that SIGINT means
# what it means at a terminal, wherever the test suite itself was started.
_CTRL_C_AS_AT_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('actors.cli', run_name='__main__', alter_sys=True)"
)


def _start_until_parts(
    cmd: list[str], parts: Path, at_least: int, **popen: Any
) -> subprocess.Popen[str]:
    """Start ``cmd`` and return once ``at_least`` result parts are committed."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < at_least:
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        time.sleep(0.2)
    return proc


def test_run_command_writes_results_and_report(smoke_index_dir, tmp_path) -> None:
    proc = subprocess.run(
        _cmd(smoke_index_dir, tmp_path, "queries.per_domain=1", "experiment.limit=3"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| ALL | hullft |" in proc.stdout
    run_dir = tmp_path / "e2e"
    assert (run_dir / "report.md").is_file()
    df = read_results(run_dir)
    assert len(df) == 3 * 4 and (df["status"] == "ok").all()


def test_driver_killed_then_rerun_completes_without_duplicates(smoke_index_dir, tmp_path) -> None:
    cmd, parts = _part_per_query_cmd(smoke_index_dir, tmp_path)
    proc = _start_until_parts(cmd, parts, 2, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait()
    before = len(list(parts.glob("part-*.parquet")))
    assert before >= 2
    rerun = subprocess.run(
        cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    df = read_results(tmp_path / "e2e")
    keys = list(zip(df["query_id"], df["method"], strict=True))
    assert len(keys) == len(set(keys))
    n_queries = df["query_id"].nunique()
    assert len(df) == 4 * n_queries and (df["status"] == "ok").all()
    assert n_queries > before
    assert len(list(parts.glob("part-*.parquet"))) == 1  # compacted once complete


def test_ctrl_c_commits_what_finished_and_says_how_to_resume(smoke_index_dir, tmp_path) -> None:
    """SIGINT (Ctrl-C) on the driver: exit 130 with one line and no traceback, every
    finished query committed, and the same command resumes to exactly-once rows."""
    cmd, parts = _part_per_query_cmd(smoke_index_dir, tmp_path)
    assert cmd[1:3] == ["-m", "actors.cli"]
    interactive = [cmd[0], "-c", _CTRL_C_AS_AT_A_TERMINAL, *cmd[3:]]
    proc = _start_until_parts(interactive, parts, 1)
    proc.send_signal(signal.SIGINT)  # the driver only, as a terminal's Ctrl-C would
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "rerun the same command" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    interrupted = read_results(tmp_path / "e2e")
    assert len(interrupted) >= 4
    rerun = subprocess.run(
        cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    df = read_results(tmp_path / "e2e")
    keys = list(zip(df["query_id"], df["method"], strict=True))
    assert len(keys) == len(set(keys)) == 4 * df["query_id"].nunique()
    assert set(zip(interrupted["query_id"], interrupted["method"], strict=True)) <= set(keys)
