"""The shipped cluster files keep Ray token authentication on, on every node."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def test_cluster_launcher_starts_every_node_with_token_auth() -> None:
    cfg = _load("cluster.yaml")
    mounts = {k.rstrip("/"): v for k, v in cfg["file_mounts"].items()}
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token", "token not shipped to nodes"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key] if re.search(r"\bray start\b", c)]
        assert starts, key
        for cmd in starts:
            words = shlex.split(cmd)
            env = words[: words.index("ray")]
            assert "RAY_AUTH_MODE=token" in env, f"{key}: {cmd}"
            assert "--dashboard-host=0.0.0.0" not in words
        # a node without the token fails before `ray start` rather than running open
        guard = cfg[key].index(starts[0]) - 1
        assert "auth_token" in cfg[key][guard] and "exit 1" in cfg[key][guard]


def test_rayjob_turns_on_token_auth_for_its_cluster() -> None:
    job = _load("rayjob.yaml")
    spec = job["spec"]["rayClusterSpec"]
    assert spec["authOptions"]["mode"] == "token"
    major, minor, *_ = (int(x) for x in spec["rayVersion"].split("."))
    assert (major, minor) >= (2, 52), "token authentication needs Ray >= 2.52"
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            # never a literal token in the manifest (the operator injects a Secret)
            assert "value" not in env.get("RAY_AUTH_TOKEN", {})
            assert env.get("RAY_AUTH_MODE", {}).get("value", "token") == "token"


def test_dockerfile_enables_token_auth_without_baking_a_token() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    env_lines = [line for line in text.splitlines() if line.startswith("ENV ")]
    assert any(re.search(r"\bRAY_AUTH_MODE=token\b", line) for line in env_lines)
    assert "RAY_AUTH_TOKEN=" not in text and "auth_token" not in " ".join(env_lines)


def test_local_head_stops_only_its_own_head() -> None:
    text = (CLUSTER / "local_head.sh").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\bstop\b\s+--force|ray_bin\"?\s+stop|\bray stop\b", code, re.I)
    assert "--block" in code and "--temp-dir" in code
    assert "export RAY_AUTH_MODE=token" in code
    assert "--dashboard-host=127.0.0.1" in code
