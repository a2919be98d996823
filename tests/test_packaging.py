"""What `pip install` ships: the configs travel inside the package, the tools stay out.

A wheel is built from a copy of the package sources (so the checkout gets no build/
or *.egg-info), unpacked into a folder that is not a checkout, and the command's
config loading is run from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parent.parent
# What pyproject.toml needs to build: its metadata and the two packages.
SOURCES = ("pyproject.toml", "README.md", "hullft", "actors")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: build with this environment's setuptools (a dev dependency),
    # offline.
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run(
        [sys.executable, "-m", "pip", *build, "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=HANG_GUARD_S,
    )
    (whl,) = out.glob("hullft-*.whl")
    return whl


def test_wheel_ships_every_config_and_no_tools(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "hullft/configs").rglob("*"))
    yamls = [c for c in configs if c.endswith(".yaml")]
    assert len(yamls) >= 20 and "hullft/configs/config.yaml" in yamls
    missing = [c for c in yamls if c not in names]
    assert not missing, f"configs not in the wheel (pyproject package-data): {missing}"
    assert not [c for c in configs if not c.endswith(".yaml") and (ROOT / c).is_file()]
    assert not [n for n in names if n.startswith(("tools/", "configs/", "tests/"))]
    assert "actors/cli.py" in names and "hullft/assets/minipile/train.jsonl.zst" in names


def test_installed_command_finds_its_configs_outside_a_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import hullft, actors.cli as cli\n"
        "print(hullft.__file__)\n"
        "print(cli.config_dir())\n"
        "cfg = cli.load_config(['experiment=smoke'])\n"
        "print(cfg.model.name, cfg.embedder.name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HULLFT_CONFIG_DIR")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert out.returncode == 0, out.stderr
    module, configs, names = out.stdout.strip().splitlines()[-3:]
    assert Path(module).is_relative_to(site), module  # the unpacked wheel, not the checkout
    assert Path(configs) == site / "hullft" / "configs"
    assert names == "tiny-llama hashing"


def test_config_dir_override_and_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.cli import config_dir
    from hullft.config import ConfigError

    assert config_dir() == ROOT / "hullft" / "configs"  # this checkout's package
    monkeypatch.setenv("HULLFT_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"no config\.yaml in .* \(from HULLFT_CONFIG_DIR\)"):
        config_dir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - hullft_defaults\n")
    assert config_dir() == tmp_path
