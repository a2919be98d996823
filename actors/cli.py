"""The ``hullft`` command: ``hullft {run,demo,index,bench,config} [hydra overrides]``.

Hydra composes ``configs/`` with the overrides; the result is converted once, here,
into the typed :class:`hullft.config.RunConfig` that everything else receives.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hullft.config import ConfigError, RunConfig, build_config, config_to_dict
from hullft.index.errors import BuildLockedError
from hullft.results import DuplicateResultError
from hullft.rundir import RunDirLockedError

log = logging.getLogger("hullft")

COMMANDS = {
    "run": "run the TTFT pipeline on the query set (retrieve, select, finetune, score)",
    "demo": "the whole pipeline on the embedded defaults, sized for a laptop CPU",
    "index": "ingest a corpus and build its retrieval index",
    "bench": "throughput/quality benchmark sweeps and a report",
    "config": "print the resolved configuration and exit",
}
# Subcommands that imply an experiment unless the user picks one.
_IMPLIED_EXPERIMENT = {"demo": "demo", "bench": "bench"}


def config_dir() -> Path:
    """``$HULLFT_CONFIG_DIR`` or the repository's ``configs/``."""
    env = os.environ.get("HULLFT_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "configs"
    if not (path / "config.yaml").is_file():
        raise ConfigError(
            f"no config.yaml in {path}; run hullft from a checkout of the repository "
            "or set HULLFT_CONFIG_DIR to its configs/ folder"
        )
    return path


def load_config(overrides: Sequence[str] = (), command: str = "run") -> RunConfig:
    """Compose ``configs/`` with Hydra ``overrides`` into a validated RunConfig."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    implied = _IMPLIED_EXPERIMENT.get(command)
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
    """Trim Hydra's message and add the valid keys to its 'not in struct' error."""
    import re

    msg = msg.split("\nConfig search path:")[0].strip()
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


def _setup_logging() -> None:
    level = os.environ.get("HULLFT_LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        print(
            f"hullft: HULLFT_LOG_LEVEL={level!r} is not a log level "
            "(DEBUG, INFO, WARNING, ERROR); using INFO",
            file=sys.stderr,
        )
        level = "INFO"
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # faiss logs which SIMD build it tried first at INFO; that is noise to users.
    logging.getLogger("faiss").setLevel(logging.WARNING)
    # The embedded defaults must never reach a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hullft",
        description="Ray-distributed test-time finetuning with HullFT selection.",
        epilog="Overrides use Hydra syntax, e.g. `hullft run model=tiny selection.n=20`. "
        "Config groups live in configs/.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("overrides", nargs="*", help="Hydra overrides (key=value, group=option)")
    args = parser.parse_args(argv)
    _setup_logging()

    try:
        cfg = load_config(args.overrides, command=args.command)
    except ConfigError as exc:
        print(f"hullft: config error: {exc}", file=sys.stderr)
        return 2

    if args.command == "config":
        import yaml

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    try:
        if args.command == "index":
            from actors.driver import ensure_index

            path = ensure_index(cfg)
            print(f"index ready: {path}")
            return 0
        if args.command in ("run", "demo"):
            from actors.driver import run_pipeline

            summary = run_pipeline(cfg, demo=args.command == "demo")
            return 0 if summary.complete else 1
        if args.command == "bench":
            from actors.bench import run_bench

            run_bench(cfg)
            return 0
    except (
        ConfigError,
        OSError,  # FileNotFoundError, NotADirectoryError, PermissionError, ...
        ModuleNotFoundError,
        ValueError,
        DuplicateResultError,
        BuildLockedError,  # another `hullft index` builds the same index
        RunDirLockedError,  # another driver writes the same run directory
    ) as exc:
        print(f"hullft {args.command}: error: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
