"""``hullft run -m KEY=a,b OTHER=x,y``: every combination as its own run.

The overrides are parsed by Hydra's own override parser, so the grammar is
Hydra's: ``a,b``, ``range(1,4)``, ``choice(...)``, ``sort(...)``, group choices
(``finetune=default,plain``), quoting. Each combination is composed and validated
before anything runs; then the runs go one after another in one Ray session
(connected before the first, shut down after the last, so the index is loaded
from its cache once per run and no Ray start is repeated). Every run keeps its own
run id — the config hash — so a sweep interrupted and started again resumes each
run where it stopped and never writes a row twice. At the end one summary across
the runs goes to ``<output_dir>/sweeps/sweep-<hash>/``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from actors import ray_session
from actors.compose import load_config
from actors.driver import run_pipeline
from actors.pool import ActorPool
from hullft.config import ConfigError, RunConfig, config_to_dict
from hullft.pipeline import ROW_NEUTRAL_KEYS, ROW_NEUTRAL_SECTIONS, run_id_for
from hullft.sweep_report import SweepRun, write_sweep_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Combination:
    overrides: tuple[str, ...]
    """All overrides of this run (swept keys with one value each, plus the fixed ones)."""
    swept: dict[str, str]
    """The swept keys and their values in this combination."""


def expand(overrides: Sequence[str]) -> list[Combination]:
    """The cartesian product of Hydra sweep overrides, in command-line order (the
    last key varies fastest, as in Hydra's basic sweeper)."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(str(exc)) from exc
    axes: list[list[tuple[str, str]]] = []
    swept_keys: list[str] = []
    for o in parsed:
        key = o.get_key_element()
        if not o.is_sweep_override():
            axes.append([(key, o.get_value_element_as_str())])
            continue
        if not o.is_discrete_sweep():
            raise ConfigError(
                f"{o.input_line}: hullft sweeps enumerate values; list them "
                "(a,b,c), or use range(start,stop,step) or choice(...)"
            )
        values = list(o.sweep_string_iterator())
        if not values:
            raise ConfigError(f"{o.input_line}: the sweep has no values")
        axes.append([(key, v) for v in values])
        swept_keys.append(key)
    combos = []
    for picked in itertools.product(*axes):
        combos.append(
            Combination(
                overrides=tuple(f"{k}={v}" for k, v in picked),
                swept={k: v for k, v in picked if k in swept_keys},
            )
        )
    return combos


@dataclass(frozen=True)
class SweepResult:
    sweep_dir: Path
    runs: tuple[SweepRun, ...]

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.runs)


def run_sweep(
    overrides: Sequence[str],
    *,
    command: str = "run",
    progress: bool = True,
    on_query_done: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every combination of ``overrides`` and write the sweep summary.

    ``on_query_done`` is passed to each run (tests interrupt a sweep with it).
    """
    combos = expand(overrides)
    configs: list[RunConfig] = []
    for c in combos:
        try:
            configs.append(load_config(c.overrides, command=command))
        except ConfigError as exc:
            raise ConfigError(f"in combination {' '.join(c.overrides)}: {exc}") from exc
    run_ids = [run_id_for(cfg) for cfg in configs]
    _refuse_shared_runs(combos, run_ids)
    sweep_dir = _sweep_dir(configs[0], run_ids)
    cli = f"hullft {command} -m {' '.join(overrides)}"
    _write_manifest(sweep_dir, cli, combos, run_ids, configs)
    log.info("sweep %s: %d run(s), summary in %s", sweep_dir.name, len(combos), sweep_dir)

    # One Ray session and one actor pool for every run: run_pipeline leaves a Ray it
    # did not start alone, and reuses the pool's actors where the config allows.
    session = ray_session.connect(configs[0].cluster)
    pool = ActorPool()
    runs: list[SweepRun] = []
    try:
        for i, (combo, cfg, run_id) in enumerate(zip(combos, configs, run_ids, strict=True)):
            label = " ".join(f"{k}={v}" for k, v in combo.swept.items())
            log.info("sweep run %d/%d: %s (run %s)", i + 1, len(combos), label, run_id)
            run_dir = Path(cfg.experiment.output_dir).expanduser() / run_id
            try:
                summary = run_pipeline(
                    cfg, progress=progress, on_query_done=on_query_done, pool=pool
                )
                runs.append(SweepRun(combo.swept, run_id, run_dir, summary.complete))
            except (ConfigError, OSError, ValueError) as exc:
                log.error("sweep run %s failed: %s; going on with the next", label, exc)
                runs.append(SweepRun(combo.swept, run_id, run_dir, False, error=str(exc)))
    finally:
        pool.close()
        session.close()
    _, md, rendered = write_sweep_summary(sweep_dir, runs, cli)
    print(f"\nsweep {sweep_dir.name}: {len(runs)} run(s)\n\n{rendered}\n\nsummary: {md}")
    return SweepResult(sweep_dir, tuple(runs))


def _refuse_shared_runs(combos: Sequence[Combination], run_ids: Sequence[str]) -> None:
    """Two combinations with one run id would resume each other's rows (they differ
    only in settings that do not change a row, or share an explicit run_id)."""
    seen: dict[str, Combination] = {}
    for combo, run_id in zip(combos, run_ids, strict=True):
        if run_id in seen:
            a, b = (" ".join(f"{k}={v}" for k, v in c.swept.items()) for c in (seen[run_id], combo))
            neutral = [*ROW_NEUTRAL_SECTIONS, *(".".join(k) for k in ROW_NEUTRAL_KEYS)]
            raise ConfigError(
                f"combinations `{a}` and `{b}` map to the same run {run_id!r}: they differ "
                f"only in settings that do not change results ({', '.join(neutral)}), "
                "or experiment.run_id is set. Sweep keys that change results; for "
                "throughput sweeps use `hullft bench`."
            )
        seen[run_id] = combo


def _sweep_dir(first: RunConfig, run_ids: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join(run_ids).encode()).hexdigest()[:10]
    return Path(first.experiment.output_dir).expanduser() / "sweeps" / f"sweep-{digest}"


def _write_manifest(
    sweep_dir: Path,
    cli: str,
    combos: Sequence[Combination],
    run_ids: Sequence[str],
    configs: Sequence[RunConfig],
) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "command": cli,
        "runs": [
            {
                "swept": c.swept,
                "overrides": list(c.overrides),
                "run_id": rid,
                "run_dir": str(Path(cfg.experiment.output_dir).expanduser() / rid),
                "config": config_to_dict(cfg),
            }
            for c, rid, cfg in zip(combos, run_ids, configs, strict=True)
        ],
    }
    tmp = sweep_dir / "sweep.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, sweep_dir / "sweep.json")
