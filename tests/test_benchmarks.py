"""The engine benchmarks run as their docstrings say, on a workload of seconds.

Their figures are measured by hand on an idle machine (docs/ttft.md); these tests
only keep the scripts from rotting: each runs end to end as a user runs it, and
what it checks on the way (batched BPB against the sequential engine) holds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "tiny", "--threads", "1", "--queries", "1", "--n", "4", "--k", "16"]
TINY += ["--seq-len", "32", "--query-bytes", "256", "--repeats", "1"]


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bench_batched_checks_every_b_against_the_sequential_engine_and_profiles() -> None:
    out = _run("bench_batched.py", *TINY, "--batch", "1", "2", "--profile")
    rows = {
        m["engine"]: float(m["dbpb"])
        for m in re.finditer(
            r"^\s*(?P<engine>sequential|B=\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+x\s+(?P<dbpb>\S+)$",
            out,
            re.MULTILINE,
        )
    }
    assert set(rows) == {"sequential", "B=1", "B=2"}, out
    assert rows["sequential"] == 0.0
    assert max(rows.values()) <= 1e-5, out  # the exactness contract, fp32 on CPU
    profiled = re.findall(r"^profile\s+(\S+): top operators", out, re.MULTILINE)
    assert profiled == ["sequential", "B=2"], out
    shares = [float(s) for s in re.findall(r"^\s+([\d.]+)%\s+\d+ calls", out, re.MULTILINE)]
    assert shares and all(0.0 <= s <= 100.0 for s in shares), out


def test_bench_ttft_times_both_engines_per_query() -> None:
    out = _run("bench_ttft.py", *TINY, "--n", "2")  # fewer texts than the warm-up takes
    assert re.search(r"^per query: hullft [\d.]+ s, naive [\d.]+ s, ratio [\d.]+x", out, re.M), out
    assert re.search(r"^mean BPB change, knn: hullft -?[\d.]+", out, re.MULTILINE), out


def test_gpu_session_script_parses_and_says_how_to_use_it() -> None:
    script = ROOT / "benchmarks" / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert (
        proc.returncode == 2 and "usage: bash benchmarks/gpu_session.sh prepare|run" in proc.stderr
    )
    # Every option the GPU steps pass to a benchmark exists (argparse would exit 2 there).
    text = script.read_text(encoding="utf-8").replace("\\\n", " ")
    shape = re.search(r"shape=\(([^)]*)\)", text)
    assert shape is not None
    checked = 0
    for name in ("bench_batched.py", "bench_ttft.py"):
        help_text = _run(name, "--help")
        for line in text.splitlines():
            if line.lstrip().startswith("step ") and name in line:
                command = line.split(name, 1)[1].replace('"${shape[@]}"', shape.group(1))
                for flag in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", command):
                    assert flag in help_text, (name, flag)
                    checked += 1
    assert checked >= 20, checked


def test_a_shape_dir_without_a_config_says_how_to_make_one(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_batched.py"),
            *TINY,
            *("--model", "smollm2-shape", "--shape-dir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"--shape-dir {tmp_path}: no config.json there" in proc.stderr
    assert "gpu_session.sh prepare" in proc.stderr
