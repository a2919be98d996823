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

HANG_GUARD_S = 3600
"""Limit on a test's subprocess or wait: a guard against a hang, far beyond what a slow
or busy machine needs (CI's whole run has 90 minutes), never a timing assertion."""


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


# Whole-program tests by module: they run the CLI or a Ray job in subprocesses, build
# and kill index builds, or build a wheel; and single tests that compile a model.
# Everything else that starts Ray (marker `ray`) or needs the session's index
# (`smoke_index_dir`) is found without a list.
INTEGRATION_MODULES = {
    "test_bench",
    "test_benchmarks",
    "test_entrypoint",
    "test_index_build",
    "test_job_submit",
    "test_packaging",
}
INTEGRATION_TESTS = {"test_compiled_training_step_follows_the_plain_loop_and_compiles_once"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the integration tier; `make test-fast` runs the rest (the unit tests)."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if (
            module in INTEGRATION_MODULES
            or getattr(item, "originalname", item.name) in INTEGRATION_TESTS
            or item.get_closest_marker("ray")
            or "smoke_index_dir" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.integration)


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
