"""What ``hullft COMMAND --help`` says about configuration, generated at run time:
the config groups and their options from the config directory, and the settings
users change most with their defaults and docstrings from ``hullft/config.py``.

Nothing here is a copy: a new YAML file under a group, or a changed default or
docstring, shows up in the help without touching this module. Only the choice of
*which* keys count as "most changed" is kept here.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hullft.config import RunConfig
from hullft.config_docs import setting

WIDTH = 100

MOST_CHANGED: dict[str, tuple[str, ...]] = {
    "run": (
        "selection.methods",
        "selection.k",
        "selection.n",
        "finetune.lr",
        "finetune.refresh_interval",
        "finetune.time_budget_s",
        "finetune.batch_jobs",
        "model.name",
        "queries.per_domain",
        "index.dir",
        "cluster.address",
        "cluster.num_workers",
        "cluster.gpus_per_worker",
        "experiment.limit",
        "experiment.output_dir",
        "experiment.run_id",
    ),
    "index": (
        "data.paths",
        "data.domains",
        "data.max_docs_per_domain",
        "data.sequence_length",
        "index.kind",
        "index.dir",
        "index.distributed",
        "embedder.name",
        "embedder.batch_size",
    ),
    "bench": (
        "bench.n_values",
        "bench.time_budgets_s",
        "bench.workers",
        "bench.refresh_intervals",
        "bench.naive_baseline",
        "bench.report_dir",
        "experiment.limit",
        "model.name",
    ),
}
MOST_CHANGED["demo"] = MOST_CHANGED["run"]
MOST_CHANGED["config"] = MOST_CHANGED["run"]


@dataclass(frozen=True)
class Option:
    name: str
    description: str


def group_options(config_dir: Path) -> dict[str, list[Option]]:
    """``{group: [options]}`` for every folder of YAML files under ``config_dir``,
    groups in the root config's defaults order, then the rest alphabetically."""
    groups = {
        d.name: [Option(f.stem, _description(f)) for f in sorted(d.glob("*.yaml"))]
        for d in sorted(p for p in config_dir.iterdir() if p.is_dir())
    }
    groups = {g: opts for g, opts in groups.items() if opts}
    order = list(default_choices(config_dir))
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] not in order, _index(order, kv[0]))))


def default_choices(config_dir: Path) -> dict[str, str]:
    """``{group: option}`` chosen by the ``defaults`` list of ``config.yaml``."""
    root = yaml.safe_load((config_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    choices = {}
    for entry in root.get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                choices[str(group).split("@")[0].lstrip("/")] = str(option)
    return choices


def _index(order: list[str], item: str) -> Any:
    return order.index(item) if item in order else item


def _description(path: Path) -> str:
    """The option's first comment line (after Hydra's ``@package`` line): the text
    after its dash, or, for a line that is only a command, the command."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text or text.startswith("@package"):
            continue
        if "—" in text:
            return text.split("—", 1)[1].strip()
        return re.sub(r"\s{2,}", " ", text)
    return ""


def config_help(config_dir: Path, command: str, implied_experiment: str | None = None) -> str:
    """The configuration part of ``hullft COMMAND --help``."""
    groups = group_options(config_dir)
    chosen = default_choices(config_dir)
    if implied_experiment:
        chosen["experiment"] = implied_experiment
    lines = [f"config groups (GROUP=OPTION; * = the default; from {config_dir}):"]
    name_w = max((len(g) for g in groups), default=0) + 2
    opt_w = max((len(o.name) for opts in groups.values() for o in opts), default=0) + 3
    for group, opts in groups.items():
        for i, opt in enumerate(opts):
            mark = "*" if chosen.get(group) == opt.name else ""
            head = f"  {group if i == 0 else '':<{name_w}}{opt.name + mark:<{opt_w}}"
            lines += _wrap(head, opt.description)
    defaults = RunConfig()
    lines += ["", "settings changed most (KEY=VALUE; defaults from hullft/config.py):"]
    for key in MOST_CHANGED.get(command, MOST_CHANGED["run"]):
        s = setting(defaults, key)
        doc = s.doc.replace("``", "")  # reST literals read as noise in a terminal
        lines += _wrap(f"  {key}={_yaml_value(s.default)}", doc, indent=6, inline=False)
    lines += [
        "",
        *textwrap.wrap(
            "Groups may set other values than these defaults; `hullft config [overrides]` "
            "prints every key with its resolved value.",
            WIDTH,
        ),
    ]
    if command == "run":
        lines += [
            "Sweep with -m/--multirun and Hydra's sweep syntax, one run per combination:",
            "  hullft run -m experiment=smoke selection.n=4,8 finetune=default,plain",
        ]
    return "\n".join(lines)


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ",".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def _wrap(head: str, text: str, *, indent: int | None = None, inline: bool = True) -> list[str]:
    """``head`` followed by ``text`` wrapped to WIDTH (on the same line when it fits)."""
    if not text:
        return [head.rstrip()]
    pad = " " * (indent if indent is not None else len(head))
    if inline:
        return textwrap.wrap(
            text, WIDTH, initial_indent=head, subsequent_indent=pad, break_on_hyphens=False
        )
    return [head, *textwrap.wrap(text, WIDTH, initial_indent=pad, subsequent_indent=pad)]


def unknown_option_message(config_dir: Path, group: str, option: str) -> str:
    """``finetune=plian`` → what exists instead (and the closest match)."""
    options = [o.name for o in group_options(config_dir).get(group, [])]
    if not options:
        groups = ", ".join(group_options(config_dir))
        return f"no config group {group!r}; groups: {groups}"
    close = difflib.get_close_matches(option, options, n=1)
    hint = f" (did you mean {group}={close[0]}?)" if close else ""
    return (
        f"{group}={option}: there is no {group}/{option}.yaml in {config_dir}; "
        f"choose one of: {', '.join(options)}{hint}"
    )
