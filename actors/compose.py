"""Composing the Hydra configs into a typed RunConfig: where the configs are and how
overrides become a validated :class:`hullft.config.RunConfig`. Used by the CLI, sweeps
and tests; the one place that turns Hydra's output into typed config objects."""

from __future__ import annotations

import importlib.resources
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from actors.config_help import unknown_option_message
from hullft.config import ConfigError, RunConfig, build_config, config_to_dict

# Subcommands that imply an experiment unless the user picks one.
IMPLIED_EXPERIMENT = {"demo": "demo", "bench": "bench"}


def config_dir() -> Path:
    """``$HULLFT_CONFIG_DIR``, else the configs installed with the package.

    They ship as package data of ``hullft`` (``hullft/configs/``, YAML only: the
    library never imports Hydra), so an installed ``hullft`` finds them from any
    directory, without a checkout.
    """
    env = os.environ.get("HULLFT_CONFIG_DIR")
    path = Path(env) if env else Path(str(importlib.resources.files("hullft") / "configs"))
    if not (path / "config.yaml").is_file():
        where = "HULLFT_CONFIG_DIR" if env else "the installed hullft package"
        raise ConfigError(
            f"no config.yaml in {path} (from {where}); point HULLFT_CONFIG_DIR at a folder "
            "laid out like hullft/configs/, or reinstall hullft (pip install hullft[cpu])"
        )
    return path


def load_config(overrides: Sequence[str] = (), command: str = "run") -> RunConfig:
    """Compose the configs (:func:`config_dir`) with Hydra ``overrides`` into a RunConfig."""
    overrides = list(overrides)
    implied = IMPLIED_EXPERIMENT.get(command)
    if implied and not any(o.split("=", 1)[0].lstrip("+~") == "experiment" for o in overrides):
        overrides.insert(0, f"experiment={implied}")

    # Defaults live in the dataclasses only; Hydra sees them as the base layer,
    # so every real key exists and a misspelt override is refused by Hydra itself.
    ConfigStore.instance().store(name="hullft_defaults", node=config_to_dict(RunConfig()))
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            composed = compose("config", overrides=overrides)
        plain: Any = OmegaConf.to_container(composed, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_explain_hydra_error(str(exc))) from exc
    return build_config(RunConfig, plain)


def _explain_hydra_error(msg: str) -> str:
    """Trim Hydra's message; name the valid keys for an unknown key and the valid
    options (and the closest one) for an unknown group option."""
    msg = msg.split("\nConfig search path:")[0].strip()
    missing = re.search(r"Could not (?:find|load) '([\w/]+)/([^'/]+)'", msg)
    if missing:
        return unknown_option_message(config_dir(), missing.group(1), missing.group(2))
    match = re.search(r"Could not override '([\w.]+)'", msg)
    if not match:
        return msg
    key = match.group(1)
    node: Any = config_to_dict(RunConfig())
    for part in key.split(".")[:-1]:
        if not isinstance(node, dict) or part not in node:
            node = None
            break
        node = node[part]
    valid = sorted(node) if isinstance(node, dict) else sorted(config_to_dict(RunConfig()))
    return f"unknown config key {key!r}; valid keys here: {valid}"
