"""`ray job submit` against a head node started on localhost runs the real
entrypoint (cluster/local_head.sh → cluster/submit.sh → hullft run)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hullft.results import read_results
from tests.conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.ray


def test_ray_job_submit_on_a_local_head(tmp_path: Path) -> None:
    """...and stops only its own head: another Ray on the machine survives it."""
    env = {
        **os.environ,
        "NUM_CPUS": "2",
        "RAY_PORT": "6391",
        "RAY_DASHBOARD_PORT": "8266",
        "RAY_AGENT_PORT": "52366",
        "RAY_CLIENT_PORT": "20002",
    }
    env.pop("RAY_ADDRESS", None)
    bystander = _start_bystander_head(tmp_path, env)
    try:
        _submit_and_check(tmp_path, env)
        time.sleep(3)  # a head whose processes were killed exits within ~1 s
        assert bystander.poll() is None, "local_head.sh stopped another Ray cluster"
    finally:
        bystander.terminate()
        bystander.wait(timeout=HANG_GUARD_S)


def _start_bystander_head(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    ray_bin = str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="hullft-bystander.")
    proc = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            "--port=6399",
            f"--temp-dir={temp}",
            "--include-dashboard=false",
            # ports of its own (Ray's defaults are taken by the head under test)
            "--dashboard-agent-listen-port=52399",
            "--ray-client-server-port=20099",
            "--num-cpus=1",
            "--disable-usage-stats",
        ],
        env={**env, "RAY_AUTH_MODE": "token"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + HANG_GUARD_S
    while not list(Path(temp).glob("session_*/logs/raylet.out")):
        assert proc.poll() is None and time.monotonic() < deadline, "bystander did not start"
        time.sleep(0.5)
    return proc


def _submit_and_check(tmp_path: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [
            "bash",
            "cluster/local_head.sh",
            "experiment=smoke",
            "experiment.run_id=job",
            f"index.dir={tmp_path / 'index'}",
            f"experiment.output_dir={tmp_path / 'runs'}",
            "experiment.limit=2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "succeeded" in proc.stdout + proc.stderr
    df = read_results(tmp_path / "runs" / "job")
    assert len(df) == 2 * 4 and (df["status"] == "ok").all()
