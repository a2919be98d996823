"""A Ray head started on the machine by ``ray start --head`` (and, after it is
killed, the record of it that Ray leaves behind) does not capture ``hullft run``:
with ``cluster=local`` it starts its own Ray every time. An unreachable
``cluster.address`` fails with one line naming it.

The head gets its own Ray temp dir (shared with the runs, so they see its record
exactly as a user's runs would) and its own ports; it is stopped by killing its
own process group, never with ``ray stop``, which stops every Ray on the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hullft.results import read_results

pytestmark = [pytest.mark.ray, pytest.mark.timeout(3 * 1800 + 600)]
ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).parent / "ray"
HANG_GUARD_S = 1800
"""Only so that a regression (a run hanging on the dead head) cannot block CI forever;
the tests' pytest timeout is raised to match (two runs, a bench and a head start)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pids_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    # short: Ray puts unix sockets under it (108-byte path limit)
    path = Path(tempfile.mkdtemp(prefix="hfr", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _env(ray_tmp: Path) -> dict[str, str]:
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "HULLFT_LOG_LEVEL": "INFO"}
    env.pop("RAY_ADDRESS", None)
    return env


def _run(
    index_dir: Path, out: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "actors.cli",
        "run",
        "experiment=smoke",
        f"index.dir={index_dir}",
        f"experiment.output_dir={out}",
        "queries.per_domain=1",
        "experiment.limit=1",
        # Ray refuses num_cpus when it attaches to an existing cluster: with the
        # head up, this run fails unless it starts its own Ray.
        "cluster.num_cpus=2",
        *extra,
    ]
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )


def _bench(index_dir: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The smallest `hullft bench`: one query, one sweep point, no naive baseline."""
    cmd = [
        sys.executable,
        "-m",
        "actors.cli",
        "bench",
        "experiment=smoke",
        f"index.dir={index_dir}",
        "cluster.num_cpus=2",
        "queries.per_domain=1",
        "experiment.limit=1",
        "bench.n_values=[2]",
        "bench.time_budgets_s=[0.0]",
        "bench.workers=[1]",
        "bench.refresh_intervals=[1]",
        "bench.naive_baseline=false",
        f"bench.report_dir={out}",
    ]
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )


def test_a_head_on_the_machine_alive_or_dead_does_not_capture_a_local_run(
    smoke_index_dir: Path, tmp_path: Path, ray_tmp: Path
) -> None:
    env = _env(ray_tmp)
    port = _free_port()
    ports = {
        "--port": port,
        "--ray-client-server-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--metrics-export-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
    }
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--block",
            "--num-cpus=1",
            "--include-dashboard=false",
            *(f"{k}={v}" for k, v in ports.items()),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: we stop exactly it
    )
    record = ray_tmp / "ray" / "ray_current_cluster"  # where Ray keeps it under RAY_TMPDIR
    try:
        while not record.exists():
            assert head.poll() is None, head.stderr.read().decode()[-3000:] if head.stderr else ""
            time.sleep(0.5)
        assert str(port) in record.read_text()

        alive = _run(smoke_index_dir, tmp_path / "alive", env)
        assert alive.returncode == 0, alive.stderr[-3000:]
        assert "starting a local Ray" in alive.stderr
        assert len(read_results(next((tmp_path / "alive").iterdir()))) == 4

        # The bench sets num_cpus too: it failed outright when captured by a head.
        bench = _bench(smoke_index_dir, tmp_path / "bench", env)
        assert bench.returncode == 0, bench.stderr[-3000:]
        assert "starting a local Ray" in bench.stderr
        assert len(list((tmp_path / "bench").glob("*/report.md"))) == 1
    finally:
        # Killed with a signal, the head leaves its record behind.
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        for pid in _pids_in_group(head.pid):  # anything of it still exiting
            os.kill(pid, signal.SIGKILL)
    assert record.exists()

    dead = _run(smoke_index_dir, tmp_path / "dead", env)
    assert dead.returncode == 0, dead.stderr[-3000:]
    assert "starting a local Ray" in dead.stderr
    assert len(read_results(next((tmp_path / "dead").iterdir()))) == 4


def test_unreachable_address_is_one_line_naming_it(smoke_index_dir: Path, tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    proc = _run(
        smoke_index_dir,
        tmp_path,
        {**os.environ, "HULLFT_LOG_LEVEL": "WARNING"},
        f"cluster.address=127.0.0.1:{port}",
        "cluster.connect_timeout_s=2",
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hullft run: error: ")
    assert f"cluster.address=127.0.0.1:{port}" in lines[0]
