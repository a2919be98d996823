"""Shared fixtures: smoke configs (tiny model + hashing embedder) and one index per session."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hullft.config import RunConfig


@pytest.fixture(scope="session")
def smoke_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke corpus (minipile slice, tiny tokenizer, hashing embedder), indexed once."""
    from hullft.index import build_index

    path = tmp_path_factory.mktemp("index") / "smoke"
    cfg = smoke_config(path, tmp_path_factory.mktemp("runs"))
    return Path(build_index(cfg, progress=False))


def smoke_config(index_dir: Path, output_dir: Path, overrides: Sequence[str] = ()) -> RunConfig:
    """`experiment=smoke` with test locations and extra Hydra overrides."""
    from actors.cli import load_config

    return load_config(
        [
            "experiment=smoke",
            f"index.dir={index_dir}",
            f"experiment.output_dir={output_dir}",
            "queries.per_domain=1",
            *overrides,
        ]
    )


def ray_runtime_env() -> dict:
    """Lets Ray workers import tests/fault_workers.py (fault-injecting workers)."""
    tests_dir = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module: the tiny model gains nothing from threads,
    and on a shared CI machine an oversubscribed OpenMP pool makes small ops slow."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
