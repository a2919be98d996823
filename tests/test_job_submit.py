"""`ray job submit` against a head node started on localhost runs the real
entrypoint (cluster/local_head.sh → cluster/submit.sh → hullft run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hullft.results import read_results

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.ray


def test_ray_job_submit_on_a_local_head(tmp_path: Path) -> None:
    env = {**os.environ, "NUM_CPUS": "2", "RAY_PORT": "6391", "RAY_DASHBOARD_PORT": "8266"}
    env.pop("RAY_ADDRESS", None)
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
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "succeeded" in proc.stdout + proc.stderr
    df = read_results(tmp_path / "runs" / "job")
    assert len(df) == 2 * 4 and (df["status"] == "ok").all()
