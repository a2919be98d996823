"""The ``hullft`` command: ``hullft {run,demo,index,bench,config} [hydra overrides]``.

Hydra composes the YAML configs shipped inside the package (``hullft/configs/``, or
``$HULLFT_CONFIG_DIR``) with the overrides; the result is converted once, here, into
the typed :class:`hullft.config.RunConfig` that everything else receives.
``hullft run -m`` sweeps (:mod:`actors.sweep`); ``--help`` lists the config groups
and settings (:mod:`actors.config_help`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import yaml

from actors.compose import IMPLIED_EXPERIMENT, config_dir, load_config
from actors.config_help import config_help
from hullft.config import ConfigError, config_to_dict
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hullft",
        description="Ray-distributed test-time finetuning with HullFT selection.",
        epilog="Overrides use Hydra syntax, e.g. `hullft run model=tiny selection.n=20`. "
        "`hullft COMMAND --help` lists the config groups, their options and the settings "
        "changed most; they live in hullft/configs/ (or $HULLFT_CONFIG_DIR).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_config_epilog(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "run":
            p.add_argument(
                "-m",
                "--multirun",
                action="store_true",
                help="sweep: one run per combination of comma-separated values, "
                "range(start,stop[,step]) or group options, then one summary",
            )
        p.add_argument(
            "overrides", nargs="*", help="Hydra overrides (key=value, group=option); see below"
        )
    return parser


def _config_epilog(command: str) -> str:
    try:
        return config_help(config_dir(), command, IMPLIED_EXPERIMENT.get(command))
    except (ConfigError, OSError) as exc:
        return f"(config groups unavailable: {exc})"


INTERRUPTED = (
    "interrupted. Every finished query (and index shard) is kept; rerun the same command to resume"
)
"""What Ctrl-C prints: the driver commits its buffered rows on the way out."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # Overrides may follow -m (`hullft run -m a=1,2 b=3`): argparse leaves the ones
    # after a flag unparsed, so they are taken back here, in order.
    args, rest = parser.parse_known_args(argv)
    flags = [r for r in rest if r.startswith("-")]
    if {"-m", "--multirun"} & set(flags):
        parser.error(f"-m/--multirun sweeps `hullft run` only, not `hullft {args.command}`")
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    args.overrides = [*args.overrides, *rest]
    _setup_logging()

    if getattr(args, "multirun", False):
        return _multirun(args.command, args.overrides)
    try:
        cfg = load_config(args.overrides, command=args.command)
    except ConfigError as exc:
        print(f"hullft: config error: {exc}", file=sys.stderr)
        return 2

    if args.command == "config":
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    # The commands' modules import Ray (about half a second more) and are imported
    # by the command that needs them, so `hullft config` and `--help` stay quick.
    try:
        if args.command == "index":
            # Ray: see above
            from actors.driver import ensure_index

            path = ensure_index(cfg)
            print(f"index ready: {path}")
            return 0
        if args.command in ("run", "demo"):
            # Ray: see above
            from actors.driver import run_pipeline

            summary = run_pipeline(cfg, demo=args.command == "demo")
            return 0 if summary.complete else 1
        if args.command == "bench":
            # Ray: see above
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
    except KeyboardInterrupt:
        if args.command == "bench":  # every benchmark measures afresh: nothing resumes
            print("hullft bench: interrupted; a benchmark does not resume", file=sys.stderr)
        else:
            print(f"hullft {args.command}: {INTERRUPTED}", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


def _multirun(command: str, overrides: Sequence[str]) -> int:
    from actors.sweep import run_sweep  # Ray: see main()

    try:
        result = run_sweep(overrides, command=command)
    except ConfigError as exc:
        print(f"hullft: config error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ModuleNotFoundError, ValueError, DuplicateResultError) as exc:
        print(f"hullft {command} -m: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hullft {command} -m: {INTERRUPTED}", file=sys.stderr)
        return 130
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
